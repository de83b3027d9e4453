"""The npe2 manifest: valid, discoverable, every python_name importable without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import napari_cellclass

PKG = Path(napari_cellclass.__file__).parent
MANIFEST = PKG / "napari.yaml"


@pytest.fixture(scope="module")
def manifest():
    from npe2 import PluginManifest

    return PluginManifest.from_file(MANIFEST)


def test_manifest_validates_and_names_every_contribution(manifest):
    c = manifest.contributions
    assert manifest.name == "napari-cellclass"
    ids = {cmd.id for cmd in c.commands}
    # object mode is part of the Classify dock (its 'objects' picker), not a dock of its own
    docks = {"napari-cellclass.classify", "napari-cellclass.explain", "napari-cellclass.annotate"}
    assert {w.command for w in c.widgets} == docks
    assert {m.command for m in c.menus["napari/layers/classify"]} == docks
    keys = {s.key for s in c.sample_data}
    assert keys == {"cell-line", "cell-line-stack", "brightfield", "actin", "senescence", "protein", "cell",
                    "protein-objects"}
    assert all(s.command in ids for s in c.sample_data)
    assert all(w.command in ids for w in c.widgets)


def test_npe2_discovers_the_plugin_through_its_entry_point():
    proc = subprocess.run(
        [sys.executable, "-c",
         "from npe2 import PluginManager; pm = PluginManager(); pm.discover(include_npe1=False); "
         "m = pm.get_manifest('napari-cellclass'); print(len(m.contributions.commands))"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 9


def test_every_python_name_imports_without_torch_or_timm(manifest):
    names = [cmd.python_name for cmd in manifest.contributions.commands]
    code = (
        "import importlib, json, sys\n"
        f"names = {names!r}\n"
        "for n in names:\n"
        "    mod, attr = n.split(':')\n"
        "    assert callable(getattr(importlib.import_module(mod), attr)), n\n"
        "print(json.dumps(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_manifest_inside_the_package_is_the_repository_one():
    root = PKG.parent.parent / "napari.yaml"
    if root.exists():  # a source checkout; an installed wheel has only the packaged copy
        assert MANIFEST.read_text() == root.read_text()


def test_sample_data_for_every_modality():
    from napari_cellclass import _sample_data

    expected = {
        "cell_line": ((240, 320, 3), True), "cell_line_stack": ((4, 192, 256, 3), True),
        "brightfield": ((128, 128), False), "actin": ((224, 224, 3), True),
        "senescence": ((3, 250, 300), False), "protein": ((4, 256, 256), False),
    }
    for name, (shape, rgb) in expected.items():
        [(data, kwargs, kind)] = getattr(_sample_data, name)()
        assert kind == "image" and data.shape == shape, name
        assert bool(kwargs.get("rgb", False)) == rgb, name
        metas = kwargs["metadata"] if isinstance(kwargs["metadata"], list) else [kwargs["metadata"]]
        for meta in (m["cellclass_sample"] for m in metas):
            assert meta["true_classes"] and "synthetic" in meta["note"]
        if len(shape) == 3 and not rgb:  # channel-first samples open as one coloured layer per channel
            assert kwargs["channel_axis"] == 0 and kwargs["name"] == metas[0]["cellclass_sample"]["channel_names"]
            assert len(kwargs["colormap"]) == shape[0] and len(metas) == shape[0]
        assert float(np.std(data)) > 0, f"{name} is blank"
    [(cell, kwargs, _)] = _sample_data.phase_contrast_cell()
    assert cell.ndim == 2 and kwargs["name"] == "cell"


@pytest.mark.gui
def test_napari_opens_the_docks_from_the_manifest_sharing_one_session(make_napari_viewer):
    import napari_cellclass.widgets.runner  # noqa: F401  (as napari would, before torch)
    from napari_cellclass.widgets.classify import ClassifyDock
    from napari_cellclass.widgets.annotate import AnnotateDock
    from napari_cellclass.widgets.explain import ExplainDock

    viewer = make_napari_viewer()
    _, classify = viewer.window.add_plugin_dock_widget("napari-cellclass", "Classify")
    _, explain = viewer.window.add_plugin_dock_widget("napari-cellclass", "Explain")
    _, annotate = viewer.window.add_plugin_dock_widget("napari-cellclass", "Annotate and fine-tune")
    assert isinstance(classify, ClassifyDock) and isinstance(explain, ExplainDock)
    assert isinstance(annotate, AnnotateDock)
    assert classify.session is explain.session is annotate.session
    from napari_cellclass.widgets.classify_objects import NONE, ObjectMode

    assert isinstance(classify.objects, ObjectMode) and classify.objects.labels.currentText() == NONE


def test_sample_files_are_what_the_script_makes(tmp_path):
    """scripts/make_sample_data.py regenerates the shipped files (fixed seed): the same pixels, dtype,
    shape and TIFF metadata.  Compressed bytes are not compared: deflate's output depends on the
    zlib tifffile finds (imagecodecs' differs from Python's), not on the data."""
    from napari_cellclass import _sample_data

    script = PKG.parent.parent / "scripts" / "make_sample_data.py"
    if not script.exists():
        pytest.skip("not a source checkout")
    proc = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((_sample_data.SAMPLE_DIR / "samples.json").read_text())
    assert json.loads((tmp_path / "samples.json").read_text()) == index
    import tifffile
    from skimage.io import imread

    for entry in index.values():
        new, shipped = tmp_path / entry["file"], _sample_data.SAMPLE_DIR / entry["file"]
        if new.suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(new) as a, tifffile.TiffFile(shipped) as b:
                assert a.pages[0].description == b.pages[0].description, entry["file"]
                assert a.series[0].axes == b.series[0].axes, entry["file"]
                x, y = a.asarray(), b.asarray()
        else:
            x, y = imread(new), imread(shipped)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), entry["file"]


@pytest.mark.slow
def test_the_wheel_ships_the_real_manifest_sample_data_and_default_model(tmp_path):
    """src/napari_cellclass/napari.yaml is a git symlink to the top-level file: the wheel must hold its content."""
    import hashlib
    import stat
    import zipfile

    pytest.importorskip("hatchling")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(root)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("napari_cellclass-*.whl")
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}

        def shipped(name: str) -> bytes:
            info = infos[name]
            mode = info.external_attr >> 16
            assert not stat.S_ISLNK(mode) and (mode == 0 or stat.S_ISREG(mode)), (name, oct(mode))
            return z.read(info)

        manifest = shipped("napari_cellclass/napari.yaml")
        assert manifest == (root / "napari.yaml").read_bytes() and b"napari-cellclass" in manifest
        samples = sorted(p.name for p in (root / "src/napari_cellclass/sample_data").iterdir() if p.is_file())
        assert "samples.json" in samples and len(samples) >= 7
        for name in samples:
            assert shipped(f"napari_cellclass/sample_data/{name}") == (root / "src/napari_cellclass/sample_data" / name).read_bytes()
        model = shipped("napari_cellclass/builtin/default_model.safetensors")
        local = (root / "src/napari_cellclass/builtin/default_model.safetensors").read_bytes()
        assert hashlib.sha256(model).digest() == hashlib.sha256(local).digest()
        entry = z.read(next(n for n in infos if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[napari.manifest]" in entry and "napari-cellclass = napari_cellclass:napari.yaml" in entry
