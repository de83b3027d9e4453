"""DESIGN.md's layering rules, enforced: core/ is headless, the API imports lazily."""

from __future__ import annotations

import ast
import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_cellclass

PKG = Path(napari_cellclass.__file__).parent
FORBIDDEN_IN_CORE = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):  # every import, also those inside functions
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((PKG / "core").rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_core_never_imports_qt_napari_or_magicgui(path):
    bad = {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN_IN_CORE}
    assert not bad, f"{path} imports {bad}; core/ must stay headless (DESIGN.md)"


def test_import_linter_contracts():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e .[testing])")
    root = PKG.parent.parent
    proc = subprocess.run([exe, "--config", str(root / "pyproject.toml")], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_importing_the_api_does_not_import_torch():
    code = ("import sys, napari_cellclass, napari_cellclass.cli; "
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, sorted(m for m in sys.modules if m in ('torch','timm'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ the shape of the code (issue 12)
def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules ``path`` imports when it runs — function-level imports included,
    ``if TYPE_CHECKING:`` blocks (never executed) left out.  The graph is the one
    scripts/measure_architecture.py reports, so the rule and the measurement agree."""
    return _measure().runtime_imports(path, _module_name(path), modules)


@functools.lru_cache(maxsize=1)
def _measure():
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "measure_architecture.py"
    spec = importlib.util.spec_from_file_location("measure_architecture", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_import_cycles_among_the_package_modules():
    paths = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: _runtime_imports(p, set(paths)) for m, p in paths.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:  # depth-first; returns a cycle when it closes one
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle) + " (move the shared code down a layer)")


def test_the_cycle_check_sees_function_level_imports(tmp_path):
    pkg = tmp_path / "napari_cellclass"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\nfrom .a import f\n")
    (pkg / "c.py").write_text("from . import b\n")
    mods = {"napari_cellclass.a", "napari_cellclass.b", "napari_cellclass.c"}
    global PKG
    old, PKG = PKG, pkg
    try:
        assert _runtime_imports(pkg / "a.py", mods) == {"napari_cellclass.b"}
        assert _runtime_imports(pkg / "b.py", mods) == {"napari_cellclass.a"}  # TYPE_CHECKING left out
    finally:
        PKG = old


MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_files_and_functions_stay_small(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_FILE_LINES, f"{path.name} has {text.count(chr(10))} lines; split it by what it holds"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_top_of_core_holds_only_the_shared_basics():
    """Everything else lives in the package of its layer (io, data, models, ...)."""
    top = sorted(p.stem for p in (PKG / "core").glob("*.py") if p.stem != "__init__")
    assert top == ["atomicfile", "device", "errors", "progress"]


def _private_reaches(path: Path, modules: set[str]) -> list[str]:
    """``from m import _x`` and ``m._x`` where ``m`` is another module of the package."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                if f"{mod}.{a.name}" in modules:
                    aliases[a.asname or a.name] = f"{mod}.{a.name}"
                elif mod in modules and a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"from {mod} import {a.name}")
        elif isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in modules})
    found += [f"{aliases[n.value.id]}.{n.attr}" for n in ast.walk(tree)
              if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
              and n.attr.startswith("_") and not n.attr.startswith("__")]
    return found


def test_no_module_reaches_into_another_modules_private_names():
    """A helper another module needs is public (or moves to where both can use it)."""
    paths = {_module_name(p): p for p in PKG.rglob("*.py")}
    bad = {m: found for m, p in paths.items() if (found := _private_reaches(p, set(paths)))}
    assert not bad, f"private names used across modules: {bad}"


def test_the_private_name_check_sees_imports_and_attributes(tmp_path):
    pkg = tmp_path / "napari_cellclass"
    pkg.mkdir()
    (pkg / "a.py").write_text("def _helper():\n    pass\n")
    (pkg / "b.py").write_text("from .a import _helper\nfrom . import a as mod\nmod._helper()\n")
    global PKG
    old, PKG = PKG, pkg
    try:
        found = _private_reaches(pkg / "b.py", {"napari_cellclass.a", "napari_cellclass.b"})
    finally:
        PKG = old
    assert found == ["from napari_cellclass.a import _helper", "napari_cellclass.a._helper"]
