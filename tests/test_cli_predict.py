"""`cellclass predict / info / archs` end to end."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from napari_cellclass.cli import main


@pytest.fixture
def image_folder(tmp_path, rng):
    root = tmp_path / "imgs"
    (root / "nested").mkdir(parents=True)
    for i in range(3):
        imsave(root / f"rgb{i}.png", rng.integers(0, 255, (40, 52, 3)).astype(np.uint8))
    imsave(root / "grey.jpg", rng.integers(0, 255, (40, 52)).astype(np.uint8))
    tifffile.imwrite(root / "nested" / "stack.tif", rng.integers(0, 4000, (4, 40, 52)).astype(np.uint16),
                     metadata={"axes": "TYX"})
    tifffile.imwrite(root / "nested" / "cyx.tiff", rng.random((3, 40, 52)).astype(np.float32),
                     photometric="minisblack", metadata={"axes": "CYX"})
    return root


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_folder_of_mixed_files(tiny_model_file, image_folder, tmp_path):
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(out), "--batch-size", "3"]) == 0
    rows = _rows(out)
    assert len(rows) == 3 + 1 + 4 + 1  # three PNGs, one JPEG, a 4-plane stack, a 3-channel TIFF
    assert list(rows[0]) == ["path", "frame", "predicted_class", "confidence", "p_a", "p_b", "p_c", "ood_score", "ood", "model"]
    assert all(r["ood_score"] == "" and r["ood"] == "" for r in rows)  # the tiny model has no OOD statistics
    stack = [r for r in rows if r["path"].endswith("stack.tif")]
    assert [r["frame"] for r in stack] == ["0", "1", "2", "3"]
    for r in rows:
        probs = [float(r[f"p_{c}"]) for c in "abc"]
        assert abs(sum(probs) - 1) < 1e-4
        assert r["predicted_class"] == "abc"[int(np.argmax(probs))]
        assert r["model"] == "tiny.safetensors"


def test_rerun_skips_done_images_and_repairs_a_torn_line(tiny_model_file, image_folder, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(out)]) == 0
    full = out.read_text()
    lines = full.splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:10])  # as if killed while writing row 3
    assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(out)]) == 0
    assert "2 of 6 images already" in capsys.readouterr().err
    assert sorted(out.read_text().splitlines()) == sorted(full.splitlines())


def test_bad_file_in_folder_is_reported_not_fatal(tiny_model_file, image_folder, tmp_path, capsys):
    (image_folder / "broken.png").write_text("not a png")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(out)]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 7 image(s) could not be read" in err
    assert len(_rows(out)) == 9 and not any("broken" in r["path"] for r in _rows(out))


def test_info_and_archs(tiny_model_file, capsys):
    assert main(["info", str(tiny_model_file)]) == 0
    assert "classes (3, single-label): a, b, c" in capsys.readouterr().out
    assert main(["archs"]) == 0
    out = capsys.readouterr().out
    assert "inception_resnet_v2" in out and "protein-localization-fcn" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "{missing}", "{img}"], "does not exist"),
        (["predict", "{model}", "{empty}"], "no image files"),
        (["predict", "{model}", "{img}", "--batch-size", "0"], "at least 1"),
        (["info", "{img}"], "not a valid safetensors"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tiny_model_file, image_folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    fill = {"missing": str(tmp_path / "none.safetensors"), "img": str(image_folder / "rgb0.png"),
            "model": str(tiny_model_file), "empty": str(tmp_path / "empty")}
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("cellclass ")


def test_console_script(tiny_model_file, image_folder, tmp_path):
    out = tmp_path / "p.csv"
    proc = subprocess.run([sys.executable, "-m", "napari_cellclass.cli", "predict", str(tiny_model_file),
                           str(image_folder / "rgb0.png"), "--csv", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(_rows(out)) == 1
    proc = subprocess.run([sys.executable, "-m", "napari_cellclass.cli", "info", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_dask_fan_out_matches_local(tiny_model_file, image_folder, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = tmp_path / "local.csv"
    assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(local), "--no-progress"]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = tmp_path / "dask.csv"
        assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(out), "--no-progress",
                     "--dask-scheduler", cluster.scheduler_address, "--chunk", "2"]) == 0
    key = lambda r: (r["path"], r["frame"])  # noqa: E731
    a, b = sorted(_rows(local), key=key), sorted(_rows(out), key=key)
    assert [key(r) for r in a] == [key(r) for r in b]
    for ra, rb in zip(a, b):
        assert ra["predicted_class"] == rb["predicted_class"]
        assert all(abs(float(ra[f"p_{c}"]) - float(rb[f"p_{c}"])) < 1e-5 for c in "abc")


def test_dask_scheduler_unreachable(tiny_model_file, image_folder, capsys):
    pytest.importorskip("distributed")
    assert main(["predict", str(tiny_model_file), str(image_folder), "--dask-scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def test_worker_loads_the_model_once(tiny_model_file, monkeypatch):
    from napari_cellclass.core.models import modelfile as bundle
    from napari_cellclass.core.inference import dask as dask_predict

    calls = []
    real = bundle.load_model
    monkeypatch.setattr(bundle, "load_model", lambda p: calls.append(p) or real(p))
    dask_predict._CACHE.clear()
    first = dask_predict._worker_model(str(tiny_model_file))
    assert dask_predict._worker_model(str(tiny_model_file)) is first and len(calls) == 1


def test_progress_bar_on_stderr_unless_turned_off(tiny_model_file, tmp_path, rng, capsys):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        imsave(folder / f"im{i:02d}.png", rng.integers(0, 255, (32, 32, 3)).astype(np.uint8))
    out = tmp_path / "p.csv"
    assert main(["predict", str(tiny_model_file), str(folder), "--csv", str(out), "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "10/12 images" in err and "12/12 images" in err and "[" + "#" * 30 + "]" in err
    assert len(_rows(out)) == 12
    assert main(["predict", str(tiny_model_file), str(folder), "--csv", str(out), "--no-resume", "--no-progress"]) == 0
    assert "images" not in capsys.readouterr().err


def test_predict_records_pulls_its_input_lazily(tiny_bundle):
    """Streaming: a generator of many images is consumed a bounded look-ahead at a
    time (one batch plus the prefetch queue), not read whole before the first row."""
    import threading
    import time

    from napari_cellclass.core.inference.predict import predict_records

    n, batch = 60, 4
    pulled = []

    def images():
        for i in range(n):
            pulled.append(i)
            yield np.full((32, 32, 3), i % 255, np.uint8)

    gen = predict_records(tiny_bundle, images(), batch_size=batch, device="cpu")
    first = next(gen)
    assert first.index == 0 and np.isfinite(first.probs).all()
    time.sleep(0.5)  # give the prefetch thread every chance to run ahead
    ahead = len(pulled)
    assert ahead <= 3 * batch + 2, ahead  # the batch, the 2-batch queue, one in hand
    gen.close()
    for t in threading.enumerate():
        if t.name == "cellclass-prefetch":
            t.join(10)
    assert len(pulled) <= ahead + 1 < n  # closing stops the reading too
    rows = list(predict_records(tiny_bundle, images(), batch_size=batch, device="cpu"))
    assert [r.index for r in rows] == list(range(n))


def test_csv_into_a_read_only_folder_or_onto_a_full_disk(tiny_model_file, image_folder, tmp_path, monkeypatch, capsys):
    """One error line naming the CSV and the reason (not an 'internal error'), exit 2;
    a full disk mid-run keeps the complete rows so a rerun resumes."""
    from badinputs import SAVE_FAILURES

    ro = tmp_path / "ro"
    ro.mkdir()
    with monkeypatch.context() as m:
        SAVE_FAILURES["read-only folder"][0](m, ro)
        assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(ro / "p.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and "p.csv" in err[0] and "permission denied" in err[0], err
    assert list(ro.iterdir()) == []

    import csv as csvmod

    out = tmp_path / "full.csv"
    real = csvmod.writer
    written = []

    class FillingWriter:  # the disk fills up at the third row
        def __init__(self, fh):
            self.w = real(fh)

        def writerow(self, row):
            if len(written) == 2:
                raise OSError(28, "No space left on device")
            written.append(row)
            return self.w.writerow(row)

        def writerows(self, rows):
            return self.w.writerows(rows)

    with monkeypatch.context() as m:
        m.setattr(csvmod, "writer", FillingWriter)
        assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "full.csv" in err[0] and "disk is full" in err[0], err
    assert len(_rows(out)) == 1  # the header and the one row written before the disk filled
    assert main(["predict", str(tiny_model_file), str(image_folder), "--csv", str(out), "--no-progress"]) == 0
    assert len(_rows(out)) == 9
