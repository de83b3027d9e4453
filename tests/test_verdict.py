"""app.verdict: counts and Wilson intervals in the fine-tune verdict."""

from __future__ import annotations

import pytest

from napari_cellclass.app.verdict import accuracy_line, wilson


def test_wilson_matches_the_textbook_values():
    lo, hi = wilson(3, 6)
    assert lo == pytest.approx(0.188, abs=1e-3) and hi == pytest.approx(0.812, abs=1e-3)
    lo, hi = wilson(6, 6)
    assert lo == pytest.approx(0.610, abs=1e-3) and hi == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_six_labels_get_counts_an_interval_and_a_warning():
    line = accuracy_line(0.5, 1.0, 6)
    assert "3/6" in line and "6/6" in line and "95 % CI" in line and "only 6 label(s)" in line


def test_many_labels_with_separate_intervals_carry_no_warning():
    line = accuracy_line(0.5, 0.9, 200)
    assert "100/200" in line and "180/200" in line and "label more" not in line and "overlap" not in line
    assert "overlap" in accuracy_line(0.80, 0.84, 100)
