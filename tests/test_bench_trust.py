"""benchmarks/bench_trust.py runs end to end in its quick mode and reports finite
numbers for every candidate score and both calibration runs; the figures themselves
are for docs/measurements/trust.md, measured by hand."""

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
    cands = row["ood"]["candidates"]
    assert {"maha pooled (previous)", "energy (-logsumexp)", "implemented (model file, predict_records)"} <= set(cands)
    for name, auroc in cands.items():
        for group in ("other_modality", "held_back_class"):
            assert 0.0 <= auroc[group] <= 1.0, (name, group)
    for tag in ("val", "arch"):
        for key in ("accuracy", "ece_before", "ece_after", "brier_after", "nll_before", "nll_after"):
            assert math.isfinite(row["calibration"][tag][key]), (tag, key)
    md = (tmp_path / "bench_trust.md").read_text()
    assert "maha input statistics" in md and "Calibration, labels 20% flipped" in md


def test_bench_trust_calsplit_quick_mode_scores_every_variant(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.bench_trust import main

    assert main(["--quick", "--part", "calsplit", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "bench_trust.json").read_text())["rows"][0]["calsplit"]
    assert row["n_test"] == 24 and row["n_fresh"] == 16
    assert {"none", "T_fresh (all fresh images)", "T_half (half the fresh images)"} <= set(row["variants"])
    for name, v in row["variants"].items():
        for key in ("ece", "nll", "brier", "ece_floor", "T"):
            assert math.isfinite(v[key]), (name, key)
        assert 0.0 <= v["ece"] <= 1.0 and v["T"] > 0, name
