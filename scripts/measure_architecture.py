"""Measure the shape of the package (issue 12): import cycles, largest file, longest
function, what sits at the top of core/, the AnnotationStore's components, and the
share of GUI function parameters typed ``Any``.

    python scripts/measure_architecture.py [--json out.json]

Static (ast only): nothing of the package is imported, so it runs in a second.
Import edges include function-level imports and leave out ``if TYPE_CHECKING:``
blocks, as tests/test_architecture_rules.py does.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "napari_cellclass"
GUI_PACKAGES = ("widgets", "viewer", "app")
STORE_PARTS = {  # component class -> the module that defines it
    "AnnotationDocument": "document", "DocumentFile": "docfile", "History": "history",
    "ImageRegistry": "imageregistry", "Labelling": "labelling", "PixelLabels": "pixels", "Table": "table",
}


def module_name(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, me: str, modules: set[str]) -> set[str]:
    """Package modules ``path`` imports when it runs (function-level imports too)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in node.body for n in ast.walk(stmt)}
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != me:
                found.add(t)
    return found


def cycles(pkg: Path = PKG) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), largest first."""
    paths = {module_name(p, pkg): p for p in pkg.rglob("*.py")}
    graph = {m: runtime_imports(p, m, set(paths)) for m, p in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out, key=len, reverse=True)


def sizes(pkg: Path = PKG) -> dict[str, object]:
    files = [(p.read_text().count("\n"), str(p.relative_to(pkg.parent))) for p in pkg.rglob("*.py")]
    funcs = []
    for p in pkg.rglob("*.py"):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                funcs.append((n.end_lineno - n.lineno + 1, f"{p.relative_to(pkg.parent)}:{n.name}"))
    (fl, fn), (gl, gn) = max(files), max(funcs)
    core = pkg / "core"
    return {"largest_file": fn, "largest_file_lines": fl, "longest_function": gn, "longest_function_lines": gl,
            "core_top_modules": sorted(p.stem for p in core.glob("*.py") if p.stem != "__init__"),
            "core_top_packages": sorted(p.name for p in core.iterdir() if (p / "__init__.py").is_file())}


def _members(cls: ast.ClassDef) -> tuple[int, int]:
    """(public, all) methods and properties of a class body (dunders left out)."""
    names = [n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
             and not (n.name.startswith("__") and n.name.endswith("__"))]
    return sum(not n.startswith("_") for n in names), len(names)


def store_components(pkg: Path = PKG) -> dict[str, dict[str, int]]:
    """Methods per class of the store: AnnotationStore, its bases (mixins, before) and its
    components (after), each as {"public": n, "all": n}."""
    classes: dict[str, ast.ClassDef] = {}
    for path in (pkg / "core" / "annotations").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = node
    store = classes.get("AnnotationStore")
    if store is None:
        return {}
    wanted = ["AnnotationStore", *(b.id for b in store.bases if isinstance(b, ast.Name)), *STORE_PARTS]
    out = {}
    for name in wanted:
        if name in classes:
            public, total = _members(classes[name])
            out[name] = {"public": public, "all": total}
    return out


def _is_any(ann: ast.expr | None) -> bool:
    """``Any``, ``typing.Any``, ``Any | None`` or ``Optional[Any]``."""
    if ann is None:
        return False
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):  # a quoted annotation
        ann = ast.parse(ann.value, mode="eval").body
    text = ast.unparse(ann).replace("typing.", "").replace(" ", "")
    return text in ("Any", "Any|None", "None|Any", "Optional[Any]")


def any_share(pkg: Path = PKG) -> dict[str, object]:
    """Parameters of functions in widgets/, viewer/ and app/ (self/cls left out)."""
    total = typed_any = unannotated = 0
    per_package: dict[str, list[int]] = {}
    for sub in GUI_PACKAGES:
        n_any = n_all = 0
        for p in (pkg / sub).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text())):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [x for x in (a.vararg, a.kwarg) if x]
                for arg in params:
                    if arg.arg in ("self", "cls"):
                        continue
                    n_all += 1
                    n_any += _is_any(arg.annotation)
                    unannotated += arg.annotation is None
        per_package[sub] = [n_any, n_all]
        total += n_all
        typed_any += n_any
    return {"params": total, "typed_any": typed_any, "unannotated": unannotated,
            "any_share": round(typed_any / total, 3) if total else 0.0,
            "per_package": {k: {"typed_any": v[0], "params": v[1]} for k, v in per_package.items()}}


def measure(pkg: Path = PKG) -> dict[str, object]:
    cyc = cycles(pkg)
    return {"import_cycles": len(cyc), "largest_cycle": len(cyc[0]) if cyc else 0, "cycles": cyc,
            **sizes(pkg), "annotation_store_public_members": store_components(pkg), "gui_parameters": any_share(pkg)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    figures = measure()
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
