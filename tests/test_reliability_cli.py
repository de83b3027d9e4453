"""Issue 18's reliability matrix, the command line and the tables it writes: no
formula injected into a spreadsheet, no escape code on the terminal, no run aborted
by one file, resume per plane, cancel and divergence never replace a good model,
clean exit-2 refusals.  One parametrised case per cell."""

from __future__ import annotations

import csv
import json
import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from napari_cellclass import build_model, save_model
from napari_cellclass.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    bundle = build_model("resnet18", classes=["=cmd|' /C calc'!A0", "b"], input_size=(32, 32))
    return save_model(bundle, tmp_path_factory.mktemp("m") / "m.safetensors")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("d") / "bf"
    assert main(["synth", "brightfield", str(data), "--n", "6", "--size", "32", "32", "--no-progress"]) == 0
    return data


def _png(p: Path, shape=(32, 32, 3)) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    imsave(p, np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8), check_contrast=False)
    return p


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _huge_tiff(p: Path, side: int = 100_000) -> Path:
    """A ~150-byte TIFF whose header declares side x side uint8 pixels (deflate, 1 strip)."""
    import zlib

    data = zlib.compress(b"\0" * 16)
    tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
            (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, side), (279, 4, 1, len(data))]
    ifd_size = 2 + 12 * len(tags) + 4
    offset = 8 + ifd_size
    out = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        value = offset if tag == 273 else value
        out += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    p.write_bytes(out + struct.pack("<I", 0) + data)
    return p


# ------------------------------------------------------------------ injection
def predict_csv_neutralises_formulas(model: Path, tmp_path: Path, capsys) -> None:
    """Item 7: class, folder and file names starting with = + - @ are written with a
    leading quote; csv and pandas read that text back."""
    import pandas as pd

    files = [_png(tmp_path / "+folder" / "=HYPERLINK(1).png"), _png(tmp_path / "@x" / "-2+3.png")]
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), *map(str, files), "--csv", str(out), "--no-progress"]) == 0
    rows = _rows(out)[1:]
    cells = [c for r in rows for c in (r[0], r[2])]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), cells
    assert {r[0] for r in rows} == {str(f) for f in files}  # absolute paths: nothing to neutralise
    assert any(r[2] == "'=cmd|' /C calc'!A0" for r in rows) or all(r[2] == "b" for r in rows)
    frame = pd.read_csv(out)
    assert set(frame["predicted_class"]) <= {"'=cmd|' /C calc'!A0", "b"}
    rel = tmp_path / "rel.csv"
    cwd = os.getcwd()
    os.chdir(tmp_path / "+folder")
    try:  # a relative name starting with '=' is neutralised, and the rerun still resumes it
        assert main(["predict", str(model), "=HYPERLINK(1).png", "--csv", str(rel), "--no-progress"]) == 0
        assert main(["predict", str(model), "=HYPERLINK(1).png", "--csv", str(rel), "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
    assert [r[0] for r in _rows(rel)[1:]] == ["'=HYPERLINK(1).png"]
    assert pd.read_csv(rel)["path"].tolist() == ["'=HYPERLINK(1).png"]


def dock_export_neutralises_formulas(model: Path, tmp_path: Path, capsys) -> None:
    """Item 7: the Classify dock's Export CSV (PredictionTable) shares the neutralisation."""
    import pandas as pd

    from napari_cellclass.app.tables import PredictionTable

    table = PredictionTable(classes=["=SUM(A1)", "b"], model="@model")
    table.add("-layer", 0, "=SUM(A1)", [0.9, 0.1])
    out = table.write_csv(tmp_path / "t.csv")
    rows = _rows(out)
    assert rows[1][0] == "'-layer" and rows[1][2] == "'=SUM(A1)" and rows[1][-1] == "'@model"
    back = pd.read_csv(out)
    assert back["predicted_class"][0] == "'=SUM(A1)" and back["layer"][0] == "'-layer"


def info_strips_escape_codes(model: Path, tmp_path: Path, capsys) -> None:
    """Item 8: `cellclass info` never prints control characters from the metadata."""
    from napari_cellclass import load_model

    bundle = load_model(model)
    bundle.classes = ["\x1b[2J\x1b]8;;http://evil\x07a", "b\u202e"]
    bundle.provenance = {**bundle.provenance, "note": "\x1b[31mred\x9b"}
    p = save_model(bundle, tmp_path / "esc.safetensors")
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert not any(ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) < 0xa0 or c == "\u202e" for c in out)
    assert "a" in out


def notification_strips_escape_codes(model: Path, tmp_path: Path, capsys) -> None:
    """Item 8: the docks' notifications show file strings without control characters."""
    from napari_cellclass.core.errors import ImageError
    from napari_cellclass.viewer.notify import error_message

    for err in (ImageError("/d/\x1b[2Jx.png: cannot be read", "fix \x07it"), RuntimeError("\x1b]8;;http://e\x07")):
        text = error_message(err)
        assert "\x1b" not in text and "\x07" not in text, text


# ------------------------------------------------------- one file aborts nothing
def non_utf8_file_name(model: Path, tmp_path: Path, capsys) -> None:
    """Item 9: a file name that is not UTF-8 is predicted and written (as \\xNN)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    raw = os.fsencode(str(folder)) + b"/caf\xe9.png"
    _png(Path(os.fsdecode(raw)))
    _png(folder / "ok.png")
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(folder), "--csv", str(out), "--no-progress"]) == 0
    names = [r[0] for r in _rows(out)[1:]]
    assert len(names) == 2 and any(n.endswith("caf\\xe9.png") for n in names)
    assert main(["predict", str(model), str(folder), "--csv", str(out), "--no-progress"]) == 0  # resumes it
    assert len(_rows(out)) == 3


def _budget_cell(make, env: dict[str, str], pil_limit: int | None = None):
    def cell(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
        """Item 9: a file over the pixel budget is reported and skipped; the folder finishes."""
        folder = tmp_path / "imgs"
        folder.mkdir()
        bad = make(folder)
        good = _png(folder / "good.png")
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        if pil_limit is not None:
            from PIL import Image

            monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_limit)
        out = tmp_path / "p.csv"
        code = main(["predict", str(model), str(folder), "--csv", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "internal error" not in err and bad.name in err, err
        assert [r[0] for r in _rows(out)[1:]] == [str(good)]
    return cell


def folder_stack_skips_a_huge_header(model: Path, tmp_path: Path, capsys) -> None:
    """Item 9: the Annotate dock's *Open folder* stack leaves the 100000² TIFF out, named."""
    from napari_cellclass.core.io.gallery import FolderStack

    folder = tmp_path / "imgs"
    folder.mkdir()
    bad = _huge_tiff(folder / "bomb.tif")
    assert bad.stat().st_size < 300
    _png(folder / "good.png")
    stack = FolderStack.from_folder(folder)
    assert stack.shape[1:3] == (32, 32) and bad in stack.unreadable and "budget" in stack.unreadable[bad]


# ---------------------------------------------------------------- CSV resume
def resume_per_frame(model: Path, tmp_path: Path, capsys) -> None:
    """Item 3: a run killed inside a stack: the rerun predicts the missing planes only."""
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.random.default_rng(1).integers(0, 255, (6, 32, 32), dtype=np.uint8),
                     metadata={"axes": "TYX"})
    single = _png(tmp_path / "one.png")
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(stack), str(single), "--csv", str(out), "--no-progress"]) == 0
    full = _rows(out)
    assert len(full) == 1 + 6 + 1
    killed = [full[0]] + [r for r in full[1:] if r[0] == str(stack) and int(r[1]) < 2] + [r for r in full[1:] if r[0] == str(single)]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(killed)
    assert main(["predict", str(model), str(stack), str(single), "--csv", str(out), "--no-progress"]) == 0
    rows = _rows(out)[1:]
    pairs = [(r[0], int(r[1])) for r in rows]
    assert sorted(pairs) == sorted({(str(stack), t) for t in range(6)} | {(str(single), 0)})  # each once


# ------------------------------------------------------- cancel and divergence
def _train(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(data), "--arch", "senescence_cnn", "--input-size", "32", "--epochs", "2", "--batch-size", "2",
            "--device", "cpu", "--no-progress", "--out", str(out), *extra]


def cancel_before_the_first_epoch_keeps_the_old_model(model: Path, tiny_data: Path, tmp_path: Path, capsys,
                                                      monkeypatch) -> None:
    """Item 4: Ctrl-C in the first epoch leaves an existing --out byte-identical."""
    from napari_cellclass.cli import train as train_cli

    out = tmp_path / "m.safetensors"
    out.write_bytes(model.read_bytes())
    real_show = train_cli._show

    def show(bar, ev):
        if ev.kind == "step" and ev.epoch == 1:
            signal.raise_signal(signal.SIGINT)  # what one Ctrl-C does: the handler asks the run to stop
        real_show(bar, ev)

    monkeypatch.setattr(train_cli, "_show", show)
    code = main(_train(tiny_data, out))
    err = capsys.readouterr().err
    assert code == 130 and "before the first completed epoch" in err and "left unchanged" in err, err
    assert out.read_bytes() == model.read_bytes()


def divergence_stops_training_and_saves_nothing(model: Path, tiny_data: Path, tmp_path: Path, capsys) -> None:
    """Item 11: --lr 1e30 ends with a message (exit 2), never with a NaN model saved as best."""
    out = tmp_path / "m.safetensors"
    code = main(_train(tiny_data, out, "--lr", "1e30", "--set", "optimizer=sgd"))
    err = capsys.readouterr().err
    assert code == 2 and "training diverged" in err and "--lr" in err, err
    assert not out.exists()


# ------------------------------------------------------- exit-2 refusals (item 13)
def _refusal(argv, fragment: str):
    def cell(model: Path, tmp_path: Path, capsys) -> None:
        (tmp_path / "a.png").parent.mkdir(exist_ok=True)
        _png(tmp_path / "a.png")
        (tmp_path / "file.txt").write_text("x")
        (tmp_path / "dir").mkdir()
        args = [str(a).replace("{model}", str(model)).replace("{tmp}", str(tmp_path)) for a in argv]
        with pytest.raises(SystemExit) if args[0] == "argparse" else _nothing() as ex:
            code = main(args[1:] if args[0] == "argparse" else args)
        err = capsys.readouterr().err
        if ex is not None and hasattr(ex, "value"):
            code = ex.value.code
        assert code == 2 and "internal error" not in err and "Traceback" not in err and fragment in err, err
    return cell


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


REFUSALS = {
    "--csv pointing at a folder": (["predict", "{model}", "{tmp}/a.png", "--csv", "{tmp}/dir"], "is a folder"),
    "explain --out pointing at a file": (["explain", "{model}", "{tmp}/a.png", "--out", "{tmp}/file.txt"], "is a file"),
    "--set 'lr={'": (["argparse", "train", "{tmp}", "--arch", "senescence_cnn", "--out", "{tmp}/m.safetensors",
                      "--set", "lr={"], "not valid JSON"),
    "a folder as model": (["info", "{tmp}/dir"], "is a folder"),
    "--device cuda:99": (["predict", "{model}", "{tmp}/a.png", "--device", "cuda:99"], "'cuda:99'"),
}


def help_names_no_missing_command(model: Path, tmp_path: Path, capsys) -> None:
    """Item 13: the train help does not point at a `cellclass presets` command that does not exist."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "cellclass presets" not in out and "cellclass archs" in out


def empty_class_folder_warns(tiny_data: Path, tmp_path: Path) -> None:
    """Item 12: a class folder without images is a warning, not a silent 0-sample class."""
    import shutil

    from napari_cellclass.core.data.sources import DataWarning, load_dataset

    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    (data / "empty_class").mkdir()
    (data / "classes.txt").write_text("\n".join([*sorted(d.name for d in tiny_data.iterdir() if d.is_dir()), "empty_class"]))
    with pytest.warns(DataWarning, match=r"\['empty_class'\] have no images"):
        load_dataset(data)


def one_empty_label_is_refused(tiny_data: Path, tmp_path: Path) -> None:
    """Item 12: one CSV row with an empty label does not switch training to multi-label."""
    from napari_cellclass.core.data.sources import load_dataset
    from napari_cellclass.core.errors import DataError

    files = sorted(p for p in tiny_data.rglob("*.png"))
    rows = [[str(f), f.parent.name] for f in files]
    rows[-1][1] = ""
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "labels"], *rows])
    with pytest.raises(DataError, match="1 item\\(s\\) have no label"):
        load_dataset(manifest)
    assert load_dataset(manifest, multi_label=True).multilabel  # an explicit choice still works


CELLS = {
    "data: empty class folder warns": empty_class_folder_warns,
    "data: one empty label refused": one_empty_label_is_refused,
    "predict CSV: formulas neutralised": predict_csv_neutralises_formulas,
    "dock Export CSV: formulas neutralised": dock_export_neutralises_formulas,
    "info: escape codes stripped": info_strips_escape_codes,
    "notifications: escape codes stripped": notification_strips_escape_codes,
    "predict: non-UTF-8 file name": non_utf8_file_name,
    "predict: PNG over the pixel budget": _budget_cell(lambda f: _png(f / "big.png", (64, 64, 3)),
                                                       {"CELLCLASS_MAX_PIXELS": "5000"}),
    "predict: Pillow decompression bomb": _budget_cell(lambda f: _png(f / "bomb.png", (64, 64, 3)), {}, pil_limit=1500),
    "predict: 282-byte TIFF declaring 100000²": _budget_cell(lambda f: _huge_tiff(f / "bomb.tif"), {}),
    "folder stack: TIFF declaring 100000²": folder_stack_skips_a_huge_header,
    "predict: resume per (path, frame)": resume_per_frame,
    "train: cancel before the first epoch": cancel_before_the_first_epoch_keeps_the_old_model,
    "train: divergence": divergence_stops_training_and_saves_nothing,
    **{f"exit 2: {k}": _refusal(*v) for k, v in REFUSALS.items()},
    "help names no missing command": help_names_no_missing_command,
}


@pytest.mark.parametrize("cell", list(CELLS))
def test_cli_reliability(cell, model, tiny_data, tmp_path, capsys, monkeypatch):
    fn = CELLS[cell]
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    available = {"model": model, "tiny_data": tiny_data, "tmp_path": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}
    fn(*[available[n] for n in names])


def test_budget_default_and_setting_documented():
    """The pixel budget: 2**28 by default, CELLCLASS_MAX_PIXELS documented in README."""
    from napari_cellclass.core.io.budget import DEFAULT_MAX_PIXELS

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert DEFAULT_MAX_PIXELS == 2**28 and "CELLCLASS_MAX_PIXELS" in readme and "24 hours" in readme
    assert json.dumps(DEFAULT_MAX_PIXELS)
