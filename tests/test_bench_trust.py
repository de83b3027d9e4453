"""benchmarks/bench_trust.py runs end to end in its quick mode and reports finite
numbers; the figures themselves are for docs/trust.md, measured by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_trust_quick_mode_reports_every_measure(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.bench_trust import main

    assert main(["--quick", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "bench_trust.json").read_text())["rows"][0]
    for key in ("auroc_other_modality", "auroc_held_back_class", "ece_before", "ece_after", "brier_after"):
        assert math.isfinite(row[key]), key
    assert 0.0 <= row["auroc_other_modality"] <= 1.0
    assert "auroc_other_modality" in (tmp_path / "bench_trust.md").read_text()
