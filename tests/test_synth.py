"""Synthetic microscopy generators: API contract, files on disk, and realism.

The realism tests are the point of ``core.synth``: a classifier that sees only
global intensity statistics must stay near chance, while a simple morphology /
texture baseline must do clearly better, for every single-label task (and, per
class present or absent, for the multi-label protein task).  If a
generator regresses to brightness-separable classes (or to classes that differ in
nothing a model could see), these tests fail.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.io import imread

from napari_cellclass.core.synth import TASKS, SynthSet, TaskInfo, generate, write_dataset

SINGLE = [t for t, info in TASKS.items() if not info.multilabel]
SMALL = {"cell-line": (96, 128), "brightfield": (64, 64), "actin": (96, 96), "senescence": (100, 120),
         "protein": (96, 96)}


def _same(a: SynthSet, b: SynthSet) -> bool:
    if a.labels != b.labels or len(a.images) != len(b.images):
        return False
    if not all(np.array_equal(x, y) for x, y in zip(a.images, b.images)):
        return False
    if (a.masks is None) != (b.masks is None):
        return False
    return a.masks is None or all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks))


# --- registry and API --------------------------------------------------------------

def test_registry_names_and_fields():
    assert set(TASKS) == {"cell-line", "brightfield", "actin", "senescence", "protein"}
    for name, info in TASKS.items():
        assert isinstance(info, TaskInfo) and info.name == name
        assert len(info.default_size) == 2 and info.modality and info.study
        assert set(info.classes) <= set(info.available_classes)
    assert TASKS["cell-line"].default_size == (240, 320) and len(TASKS["cell-line"].classes) == 4
    assert len(TASKS["cell-line"].available_classes) == 8
    assert TASKS["brightfield"].classes == ["MDA-MB-468", "MCF7"]
    assert TASKS["actin"].classes == ["MCF-10A", "MCF-7", "MDA-MB-231"]
    assert TASKS["senescence"].classes == ["proliferating", "senescent"]
    assert TASKS["senescence"].channel_names == ["SRS-lipids", "TPEF", "transmission"]
    assert TASKS["protein"].channel_names == ["protein", "nucleus", "microtubules", "ER"]
    assert TASKS["protein"].multilabel
    required = {"nucleus", "nucleoli", "cytosol", "mitochondria", "plasma membrane", "ER", "Golgi", "vesicles"}
    assert required <= set(TASKS["protein"].classes)


@pytest.mark.parametrize("task", list(TASKS))
def test_shapes_dtypes_ranges_default_size(task):
    info = TASKS[task]
    s = generate(task, 2 * len(info.classes) if not info.multilabel else 3, seed=3)
    h, w = info.default_size
    expected = {"YX": (h, w), "YXS": (h, w, 3), "CYX": (len(info.channel_names), h, w)}[info.layout]
    assert s.classes == info.classes and s.multilabel == info.multilabel
    assert s.channel_names == info.channel_names and s.task == task
    for img in s.images:
        assert img.shape == expected and img.dtype == np.dtype(info.dtype)
        chans = img if info.layout == "CYX" else (img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0))
        main = chans[1] if task == "actin" else chans[0]  # actin lives in green
        top = np.iinfo(img.dtype).max
        assert main.std() > 0.02 * (top if img.dtype == np.uint8 else float(main.max()))
        assert (main == top).mean() < 0.02, "the signal should not be clipped wholesale"
    if task == "senescence":
        assert max(int(im.max()) for im in s.images) > 255, "16-bit data should use more than 8 bits"


@pytest.mark.parametrize("task", list(TASKS))
def test_deterministic_and_prefix_stable(task):
    size = SMALL[task]
    a = generate(task, 8, seed=11, size=size)
    b = generate(task, 8, seed=11, size=size)
    assert _same(a, b)
    head = generate(task, 4, seed=11, size=size)
    a4 = SynthSet(a.images[:4], a.labels[:4], a.classes, a.multilabel, a.channel_names,
                  None if a.masks is None else a.masks[:4], a.task)
    assert _same(head, a4), "image i must not depend on n"
    other = generate(task, 4, seed=12, size=size)
    assert not any(np.array_equal(x, y) for x, y in zip(head.images, other.images))
    assert len({im.tobytes() for im in a.images}) == len(a.images), "images within a set must differ"


@pytest.mark.parametrize("task", SINGLE)
def test_balanced_round_robin(task):
    k = len(TASKS[task].classes)
    s = generate(task, 3 * k + 1, seed=0, size=SMALL[task])
    assert all(len(lab) == 1 for lab in s.labels)
    counts = np.bincount([lab[0] for lab in s.labels], minlength=k)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 3 * k + 1
    assert [lab[0] for lab in s.labels[:k]] == list(range(k))


def test_custom_size_and_class_subsets():
    s = generate("cell-line", 8, size=(60, 80), classes=TASKS["cell-line"].available_classes)
    assert s.images[0].shape == (60, 80, 3) and len(s.classes) == 8
    assert [lab[0] for lab in s.labels] == list(range(8))
    pair = generate("cell-line", 4, size=(60, 80), classes=["EFO-27", "EFO-27rCDDP2000"])
    assert pair.classes == ["EFO-27", "EFO-27rCDDP2000"]
    p = generate("protein", 6, size=(64, 64), classes=["nucleus", "mitochondria", "Golgi"])
    assert all(m.shape == (3, 64, 64) for m in p.masks)
    assert all(set(lab) <= {0, 1, 2} for lab in p.labels)


@pytest.mark.parametrize("kwargs", [
    dict(task="no-such-task"), dict(task="actin", classes=["HeLa"]), dict(task="actin", classes=["MCF-7"]),
    dict(task="actin", classes=["MCF-7", "MCF-7"]), dict(task="actin", size=(8, 8)),
    dict(task="actin", seed=-1),
])
def test_bad_arguments_raise_value_error(kwargs):
    task = kwargs.pop("task")
    with pytest.raises(ValueError):
        generate(task, 2, **kwargs)


def test_synth_does_not_import_torch_or_qt():
    code = ("import sys, napari_cellclass.core.synth as s; s.generate('actin', 1, size=(64, 64)); "
            "bad = [m for m in ('torch', 'timm', 'napari', 'qtpy', 'magicgui', 'PyQt6') if m in sys.modules]; "
            "assert not bad, bad")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env_path = src + (":" + sys.path[0] if sys.path and sys.path[0] else "")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})


# --- protein: multi-label and masks ------------------------------------------------

def test_protein_labels_and_masks():
    s = generate("protein", 40, seed=2, size=(128, 128))
    k = len(s.classes)
    counts = [len(lab) for lab in s.labels]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) >= 3
    primaries = np.bincount([i % k for i in range(40)], minlength=k)
    seen = np.zeros(k, int)
    for lab in s.labels:
        assert lab == sorted(set(lab))
        seen[lab] += 1
    assert (seen >= primaries).all(), "each class appears at least as often as round-robin gives it"
    ratios = []
    for img, lab, m in zip(s.images, s.labels, s.masks):
        assert m.dtype == bool and m.shape == (k, 128, 128)
        absent = [j for j in range(k) if j not in lab]
        assert not m[absent].any(), "absent classes must have empty masks"
        assert all(m[j].any() for j in lab), "present classes must have a mask"
        union = m.any(0)
        prot = img[0].astype(float)
        ratios.append(prot[union].mean() / max(prot[~union].mean(), 1.0))
    assert np.median(ratios) > 5 and min(ratios) > 2


def test_protein_expressed_in_only_some_cells():
    from skimage.filters import threshold_otsu

    s = generate("protein", 12, seed=5, size=(128, 128), classes=["nucleus"])
    covered = []
    for img, m in zip(s.images, s.masks):
        dna = img[1] > threshold_otsu(img[1])
        covered.append((m[0] & dna).sum() / dna.sum())
    covered = np.array(covered)
    assert covered.max() <= 1.0 and covered.min() > 0
    assert (covered < 0.7).sum() >= 3, f"protein should miss some nuclei in many images: {covered.round(2)}"


def test_protein_reference_channels_everywhere():
    s = generate("protein", 4, seed=0)
    for img in s.images:
        nuc, mt, er = img[1].astype(float), img[2].astype(float), img[3].astype(float)
        cells = mt > np.percentile(mt, 50)
        assert nuc.max() > 100 and mt.max() > 100 and er.max() > 100
        assert er[cells].mean() > 2 * er[~cells].mean() + 1


# --- files on disk -----------------------------------------------------------------

@pytest.mark.parametrize("task", SINGLE)
def test_write_dataset_class_folders_round_trip(task, tmp_path):
    info = TASKS[task]
    n = 2 * len(info.classes)
    out = write_dataset(task, tmp_path / task, n, seed=4, size=SMALL[task])
    s = generate(task, n, seed=4, size=SMALL[task])
    assert (out / "classes.txt").read_text().splitlines() == info.classes
    ext = ".tif" if info.layout == "CYX" else ".png"
    for i, (img, lab) in enumerate(zip(s.images, s.labels)):
        f = out / info.classes[lab[0]] / f"{task}_{i:05d}{ext}"
        assert f.exists()
        if ext == ".png":
            back = imread(f)
        else:
            with tifffile.TiffFile(f) as tif:
                assert tif.series[0].axes == "CYX"
                back = tif.series[0].asarray()
        assert back.dtype == img.dtype and np.array_equal(back, img)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == n + 1 and not any(".tmp" in p.name for p in files)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(info.classes)


def test_write_dataset_protein_csv_masks_round_trip(tmp_path):
    calls = []
    out = write_dataset("protein", tmp_path / "prot", 6, seed=9, size=(64, 64),
                        progress=lambda done, total: calls.append((done, total)))
    s = generate("protein", 6, seed=9, size=(64, 64))
    assert calls[-1] == (6, 6) and len(calls) == 6
    assert (out / "classes.txt").read_text().splitlines() == s.classes
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "labels"] and len(rows) == 7
    for i, (path, labels) in enumerate(rows[1:]):
        assert labels.split(";") == [s.classes[j] for j in s.labels[i]]
        img_path = out / path
        with tifffile.TiffFile(img_path) as tif:
            assert tif.series[0].axes == "CYX"
            assert np.array_equal(tif.series[0].asarray(), s.images[i])
        with tifffile.TiffFile(out / "masks" / img_path.name) as tif:
            m = tif.series[0].asarray()
            assert tif.series[0].axes == "CYX"
        assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
        assert np.array_equal(m.astype(bool), s.masks[i])
    assert not any(".tmp" in p.name for p in out.rglob("*"))


# --- realism: morphology, not brightness -------------------------------------------

REALISM = {"cell-line": ((96, 128), 200), "brightfield": ((96, 96), 200), "actin": ((96, 96), 180),
           "senescence": ((100, 120), 160)}


def _channels(img: np.ndarray, layout: str) -> list[np.ndarray]:
    x = img.astype(np.float32)
    if layout == "YX":
        return [x]
    if layout == "YXS":
        return [x[..., c] for c in range(3)]
    return list(x)


def _intensity_features(img: np.ndarray, layout: str) -> list[float]:
    f: list[float] = []
    for c in _channels(img, layout):
        f += [float(c.mean()), float(c.std()), *np.percentile(c, [1, 5, 25, 50, 75, 95, 99]).tolist()]
    return f


def _radial_spectrum(c: np.ndarray, nb: int = 10) -> list[float]:
    c = (c - c.mean()) / (c.std() + 1e-6)
    power = np.abs(np.fft.fft2(c)) ** 2
    fy = np.fft.fftfreq(c.shape[0])[:, None]
    fx = np.fft.fftfreq(c.shape[1])[None, :]
    idx = np.digitize(np.hypot(fy, fx).ravel(), np.linspace(0.01, 0.5, nb + 1))
    prof = np.bincount(idx, power.ravel(), nb + 2)[1:nb + 1] / np.maximum(np.bincount(idx, None, nb + 2)[1:nb + 1], 1)
    prof = np.log(prof + 1e-9)
    return (prof - prof.mean()).tolist()


def _morphology_features(img: np.ndarray, layout: str) -> list[float]:
    """Gain/offset-invariant texture: local binary patterns + shape of the spectrum."""
    from skimage.feature import local_binary_pattern

    chans = _channels(img, layout)
    if layout == "YXS":
        chans = [np.mean(chans, 0)]
    f: list[float] = []
    for c in chans:
        for radius in (1, 2, 4):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LBP on float input: fine for this use
                lbp = local_binary_pattern(c, 8, radius, "uniform").astype(int)
            f += (np.bincount(lbp.ravel(), minlength=10) / lbp.size).tolist()
        f += _radial_spectrum(c)
    return f


def _cv_accuracy(x: np.ndarray, y: np.ndarray, model: str) -> float:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = (make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)) if model == "logreg"
           else RandomForestClassifier(100, random_state=0, n_jobs=1))
    return float(cross_val_score(clf, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean())


@pytest.mark.parametrize("task", SINGLE)
def test_intensity_statistics_near_chance_morphology_well_above(task):
    size, n = REALISM[task]
    info = TASKS[task]
    s = generate(task, n, seed=2024, size=size)
    y = np.array([lab[0] for lab in s.labels])
    chance = 1.0 / len(s.classes)
    xi = np.array([_intensity_features(im, info.layout) for im in s.images])
    xm = np.array([_morphology_features(im, info.layout) for im in s.images])
    for model in ("logreg", "forest"):
        acc = _cv_accuracy(xi, y, model)
        assert acc <= chance + 0.15, f"{task}: global intensity statistics predict the class ({model} {acc:.2f})"
    acc = _cv_accuracy(xm, y, "logreg")
    assert acc >= chance + 0.3, f"{task}: morphology baseline only {acc:.2f} (chance {chance:.2f})"


def _colocalisation(img: np.ndarray) -> list[float]:
    """Pearson correlation of the protein with each reference channel (gain/offset invariant)."""
    p = img[0].astype(np.float64).ravel()
    return [float(np.corrcoef(p, c.astype(np.float64).ravel())[0, 1]) for c in img[1:]]


def _per_class_cv_auc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-validated ROC AUC of one logistic regression per class (presence vs absence)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = []
    for k in range(y.shape[1]):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
        p = cross_val_predict(clf, x, y[:, k], cv=KFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
        out.append(roc_auc_score(y[:, k], p))
    return np.array(out)


def test_protein_presence_is_in_the_pattern_not_the_brightness():
    """Multi-label form of the realism check: per class, does the image contain it?

    Global intensity statistics of all four channels must leave most classes near
    chance (AUC 0.5), while texture of the protein channel plus its colocalisation
    with the reference channels must find nearly every class.  Known, accepted leak:
    compartments that fill the cell (cytosol, microtubules) raise the mean protein
    signal, so a few classes sit above chance on intensity alone.
    """
    s = generate("protein", 240, seed=2024, size=(96, 96))
    y = np.array([[k in lab for k in range(len(s.classes))] for lab in s.labels], int)
    assert (y.sum(0) >= 20).all(), "every class needs enough positives for a meaningful AUC"
    xi = np.array([_intensity_features(im, "CYX") for im in s.images])
    xm = np.array([_morphology_features(im[:1], "CYX") + _colocalisation(im) for im in s.images])
    auc_i, auc_m = _per_class_cv_auc(xi, y), _per_class_cv_auc(xm, y)
    report = ", ".join(f"{c} {a:.2f}/{b:.2f}" for c, a, b in zip(s.classes, auc_i, auc_m))
    near_chance = np.abs(auc_i - 0.5) <= 0.15
    assert near_chance.sum() >= 8, f"intensity statistics reveal too many classes (intensity/pattern AUC): {report}"
    assert np.median(auc_i) <= 0.65 and auc_i.max() < 0.9, f"intensity statistics reveal the labels: {report}"
    assert np.median(auc_m) >= 0.8, f"the pattern baseline should find the classes: {report}"
    assert (auc_m >= auc_i + 0.1).sum() >= 10, f"pattern should beat intensity for nearly every class: {report}"
