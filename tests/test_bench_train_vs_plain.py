"""benchmarks/bench_train_vs_plain.py runs end to end in its --quick mode (figures are not judged here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # four subprocesses that each import torch: ~40 s on 2 cores
def test_train_vs_plain_runs_in_quick_mode(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'src'}:{ROOT}")  # the subprocesses import this checkout
    from benchmarks.bench_train_vs_plain import main

    assert main(["--quick", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "train_vs_plain.json").read_text())
    assert [r["row"] for r in doc["rows"]] == ["rgb8-cells", "f32-nlo-3ch"]
    for r in doc["rows"]:
        assert 0.0 <= r["f1_ours"] <= 1.0 and 0.0 <= r["f1_plain"] <= 1.0
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0
    assert (tmp_path / "train_vs_plain.md").read_text().count("\n| ") == len(doc["rows"]) + 2
