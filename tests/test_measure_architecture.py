"""scripts/measure_architecture.py measures what docs/measurements/architecture.md reports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("measure_architecture", ROOT / "scripts" / "measure_architecture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_it_finds_a_cycle_through_a_function_level_import_and_the_longest_function(tmp_path):
    m = _script()
    pkg = tmp_path / "napari_cellclass"
    (pkg / "core").mkdir(parents=True)
    for d in (pkg, pkg / "core"):
        (d / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from . import b\n    return b\n")
    (pkg / "core" / "b.py").write_text("from typing import TYPE_CHECKING\nfrom .a import f\nif TYPE_CHECKING:\n    from . import c\n")
    (pkg / "core" / "c.py").write_text("from . import b\n" + "x = 1\n" * 10)
    for sub in ("widgets", "viewer", "app"):
        (pkg / sub).mkdir()
        (pkg / sub / "__init__.py").write_text("from typing import Any\n\ndef g(self, a: Any, b: int, c: 'Any | None') -> None:\n    pass\n")
    got = m.measure(pkg)
    assert got["cycles"] == [["napari_cellclass.core.a", "napari_cellclass.core.b"]]  # c -> b only, b -> c is TYPE_CHECKING
    assert got["longest_function"].endswith("a.py:f") and got["longest_function_lines"] == 3
    assert got["largest_file"].endswith("c.py") and got["core_top_modules"] == ["a", "b", "c"]
    assert got["gui_parameters"]["typed_any"] == 6 and got["gui_parameters"]["params"] == 9


def test_the_package_now_has_no_cycle_and_the_store_is_composed():
    got = _script().measure()
    assert got["import_cycles"] == 0
    parts = got["annotation_store_public_members"]
    assert {"AnnotationDocument", "History", "ImageRegistry", "Labelling", "PixelLabels", "Table"} <= set(parts)
