"""The bad-input matrix of issue 7, through the Python API and the CLI.

Every case either works (and gives finite probabilities) or fails with a
CellclassError whose message names the problem — never another exception, never
a traceback from the CLI, never a half-written output.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imsave

from napari_cellclass import build_model, load_model, predict, save_model
from napari_cellclass.cli import main
from napari_cellclass.core.errors import CellclassError

from badinputs import _OK, FILE_CASES, IMAGE_CASES, MODEL_CASES, SAVE_FAILURES


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    bundle = build_model("resnet18", classes=["a", "b"], input_size=(32, 32))
    path = save_model(bundle, tmp_path_factory.mktemp("m") / "m.safetensors")
    return bundle, path


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_api_images(case, model):
    make, expected = IMAGE_CASES[case]
    bundle, _ = model
    if expected == _OK:
        probs = predict(bundle, make())
        assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)
    else:
        with pytest.raises(CellclassError, match=expected):
            predict(bundle, make())


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_api_and_cli_files(case, model, tmp_path, capsys):
    name, write, expected = FILE_CASES[case]
    bundle, path = model
    f = tmp_path / name
    write(f)
    out = tmp_path / "out.csv"
    code = main(["predict", str(path), str(f), "--csv", str(out), "--no-progress"])
    err = capsys.readouterr().err
    if expected == _OK:
        assert np.isfinite(predict(bundle, f)).all()
        assert code == 0 and len(out.read_text().splitlines()) == 2
    else:
        with pytest.raises(CellclassError, match=expected):
            predict(bundle, f)
        assert code == 2 and name in err and "Traceback" not in err
        assert out.read_text().splitlines() == [out.read_text().splitlines()[0]]  # header only, no half row


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_bad_model_files(case, model, tmp_path, capsys):
    _, good = model
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes())
    MODEL_CASES[case](bad)
    with pytest.raises(CellclassError):
        load_model(bad)
    img = tmp_path / "x.png"
    imsave(img, np.zeros((32, 32, 3), np.uint8))
    assert main(["predict", str(bad), str(img)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.safetensors" in err[0]


def _cli_files(case, tmp_path):
    """The array written as a TIFF (any array), and as a PNG where PNG can hold it."""
    import tifffile

    arr = np.asarray(IMAGE_CASES[case][0]())
    tif = tmp_path / "bad.tif"
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    tifffile.imwrite(tif, arr, photometric="rgb" if rgb else "minisblack")
    files = [tif]
    rgb_like = arr.ndim == 2 or rgb
    if arr.dtype in (np.uint8, np.uint16) and rgb_like:
        png = tmp_path / "bad.png"
        imsave(png, arr, check_contrast=False)
        files.append(png)
    return files


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_cli_array_files(case, model, tmp_path, capsys):
    """Each array case, written to a file, through `cellclass predict`: rows for the
    ones that work; for the others exit 2 with lines naming the file and the reason,
    no traceback, and a CSV holding the header only (no half row)."""
    _, expected = IMAGE_CASES[case]
    _, path = model
    for f in _cli_files(case, tmp_path):
        out = tmp_path / f"{f.suffix[1:]}.csv"
        code = main(["predict", str(path), str(f), "--csv", str(out), "--no-progress"])
        err = capsys.readouterr().err
        lines = out.read_text().splitlines()
        assert "Traceback" not in err and all(ln.startswith("cellclass predict") for ln in err.splitlines()), err
        if expected == _OK:
            assert code == 0, err
            assert len(lines) >= 2 and all(len(ln.split(",")) == len(lines[0].split(",")) for ln in lines)
            probs = np.array([[float(v) for v in ln.split(",")[4:6]] for ln in lines[1:]])
            assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-4)
        else:
            assert code == 2 and f.name in err and expected in err, err
            assert len(lines) == 1  # the header only


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("d") / "bf"
    assert main(["synth", "brightfield", str(data), "--n", "6", "--size", "32", "32", "--no-progress"]) == 0
    return data


@pytest.mark.parametrize("case", list(SAVE_FAILURES))
def test_cli_train_cannot_write_the_model(case, tiny_data, model, tmp_path, monkeypatch, capsys):
    """`cellclass train --out` into a read-only folder or onto a full disk: exit 2,
    one error line naming the folder and the reason, the previous model intact, no
    temporary file left behind."""
    install, reason = SAVE_FAILURES[case]
    out_dir = tmp_path / "models"
    out_dir.mkdir()
    out = out_dir / "m.safetensors"
    _, previous = model
    out.write_bytes(previous.read_bytes())
    install(monkeypatch, out_dir)
    code = main(["train", str(tiny_data), "--arch", "senescence_cnn", "--input-size", "32", "--epochs", "1",
                 "--batch-size", "4", "--device", "cpu", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if "error" in ln]
    assert code == 2 and "Traceback" not in err, err
    assert len(errors) == 1 and errors[0].startswith("cellclass train: error:") and reason in errors[0], err
    assert str(out_dir) in errors[0]
    assert out.read_bytes() == previous.read_bytes()
    assert sorted(p.name for p in out_dir.iterdir()) == ["m.safetensors"]
    if case == "read-only folder":  # found before training, not after
        assert "epoch" not in err, err


def _explain(bundle, image):
    from napari_cellclass.core.explain import explain

    res = explain(bundle, image)
    assert res.maps.shape == (1, 32, 32) and np.isfinite(res.maps).all()
    assert 0 <= res.maps.min() and res.maps.max() <= 1
    return res.probabilities


# what a user may ask of the session's model while a fine-tune of it runs
WHILE_FINETUNING = {
    "explain": _explain,
    "predict": lambda bundle, image: predict(bundle, image)[0],
}


@pytest.mark.parametrize("request_kind", list(WHILE_FINETUNING))
def test_request_while_a_fine_tune_holds_the_model(request_kind, model):
    """Issue 7's API cell: explain (or predict) on the session's bundle while
    core.finetune trains from it in another thread.  The request is answered while
    training goes on (fine-tuning works on its own copy), gives the answer the
    untouched model gives, and the fine-tune then stops cleanly."""
    import threading

    from napari_cellclass.core.training.finetune import FineTuneOptions, finetune_steps, start_model

    bundle, _ = model
    rng = np.random.default_rng(1)
    items = [(rng.random((3, 32, 32), dtype=np.float32), [i % 2], f"im{i}") for i in range(8)]
    image = np.moveaxis(items[0][0], 0, -1)
    expected = WHILE_FINETUNING[request_kind](bundle, image)
    before = {k: v.clone() for k, v in bundle.network.state_dict().items()}
    start = start_model("model", None, ["a", "b"], 3, bundle=bundle)
    stop, stepped, box = threading.Event(), threading.Event(), {}

    def tune():
        try:
            gen = finetune_steps(start, items, ["a", "b"], FineTuneOptions(epochs=10_000, batch_size=4, augment=False),
                                 stop=stop, device="cpu")
            while True:
                if next(gen).kind == "step":
                    stepped.set()
        except StopIteration as done:
            box["outcome"] = done.value
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            box["error"] = err
            stepped.set()

    worker = threading.Thread(target=tune, daemon=True)
    worker.start()
    try:
        assert stepped.wait(300) and "error" not in box, box.get("error")
        got = WHILE_FINETUNING[request_kind](bundle, image)
        assert worker.is_alive(), "the fine-tune should still be running when the answer came"
        np.testing.assert_allclose(got, expected, atol=1e-5)
    finally:
        stop.set()
        worker.join(300)
    assert not worker.is_alive() and "error" not in box, box.get("error")
    assert box["outcome"].cancelled and box["outcome"].bundle is not bundle
    after = bundle.network.state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)  # the session model untouched
