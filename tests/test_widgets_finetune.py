"""The fine-tune tab end to end in a real napari viewer (run under xvfb-run):
label with keys and shapes, fine-tune on the CPU, compare, keep, save, undo, cancel.

The task: two synthetic phase-contrast cell lines (core.synth ``cell-line``) at
64 px.  The start is the built-in default model (EfficientNet-Lite0): annotating
two classes gives it a new, untrained 2-class head, so it starts at chance; two
epochs of head training (frozen backbone) on 24 labels lift it well above: headless
over 5 seeds (scripts/measure_finetune.py, same options) held-out accuracy went
0.62→0.90, 0.65→0.80, 0.62→0.85, 0.48→0.82, 0.25→0.88 — never less than +0.15.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)

from test_widgets_annotate import press  # noqa: E402  (tests/ is on sys.path)

pytestmark = pytest.mark.gui

CLASSES = ["COLO-704", "EFO-21"]


def synth(n, seed):
    from napari_cellclass.core.synth import generate

    s = generate("cell-line", n, seed=seed, size=(64, 64), classes=CLASSES)
    return np.stack(s.images), [lab[0] for lab in s.labels]


@pytest.fixture
def dock(annotate_dock):
    return annotate_dock


def wait(qtbot, controls, timeout=240_000):
    qtbot.waitUntil(lambda: not controls.running, timeout=timeout)


def annotate(dock, qtbot, tmp_path):
    """20 frames labelled with keys 1/2, and 4 rectangles on two more images."""
    viewer = dock.viewer
    images, labels = synth(24, seed=3)
    movie = viewer.add_image(images[:20], name="movie", rgb=True)
    dock.open_annotations(tmp_path / "ann.json")
    for c in CLASSES:
        dock.add_class(c)
    viewer.layers.selection.active = movie
    viewer.dims.set_point(0, 0)
    for t in range(20):
        press(viewer, str(labels[t] + 1))  # labels the frame and moves to the next one
    store = dock.store
    assert [store.image_labels("movie", t) for t in range(20)] == [(CLASSES[c],) for c in labels[:20]]
    for i in (20, 21):
        single = viewer.add_image(images[i], name=f"cells{i}", rgb=True)
        viewer.layers.selection.active = single
        shapes = dock.add_layer("regions")
        dock.classes.set_current(CLASSES[labels[i]])
        shapes.add_rectangles(np.array([[2.0, 2.0], [45.0, 45.0]]))
        shapes.add_rectangles(np.array([[18.0, 18.0], [61.0, 61.0]]))
        qtbot.waitUntil(lambda: len(store.items_of(f"cells{i}")) == 2)
    assert store.counts() == {c: sum(lb == k for lb in labels[:20]) + 2 * sum(labels[i] == k for i in (20, 21))
                              for k, c in enumerate(CLASSES)}
    return store


def test_label_fine_tune_compare_keep_save_undo(dock, qtbot, tmp_path):
    from napari_cellclass.core.models.modelfile import load_model
    from napari_cellclass.core.training.finetune import evaluate_items, file_sha256

    store = annotate(dock, qtbot, tmp_path)
    panel = dock.finetune
    dock.tabs.setCurrentWidget(panel)
    panel.epochs.setValue(2)
    panel.lr.setValue(3e-3)
    panel.freeze.setValue(0.9)
    panel.batch.setValue(8)
    panel.val.setValue(0.25)
    assert panel.start.choice().kind == "model" and dock.session.choice.kind == "default"
    assert panel.run() is not None
    wait(qtbot, panel.controls)
    outcome = panel.outcome
    assert outcome is not None and not outcome.cancelled
    assert outcome.bundle.classes == CLASSES and outcome.n_train + outcome.n_val == 24
    assert len(panel.curves.series["loss"]) == 2 and "→" in panel.result.text()
    # the verdict's per-class table and confusion matrix cover every held-out label
    assert panel.details.per_class.rowCount() == 2 and panel.details.is_open()
    cells = [panel.details.matrix.item(r, c).text().split(" → ") for r in range(2) for c in range(2)]
    assert sum(int(a) for _, a in cells) == sum(int(b) for b, _ in cells) == outcome.n_val

    # the tuned model against the model it started from, on held-out synthetic cells
    images, labels = synth(40, seed=11)
    held = [(np.moveaxis(im, -1, 0), [lb], f"t{i}") for i, (im, lb) in enumerate(zip(images, labels))]
    before = evaluate_items(outcome.start, held, "cpu")["accuracy"]
    after = evaluate_items(outcome.bundle, held, "cpu")["accuracy"]
    assert after >= 0.75 and after >= before + 0.1, (before, after)

    # keep: the session's fine-tuned model, re-classified layers; save with provenance; undo
    assert panel.keep()
    assert dock.session.fine_tuned is outcome.bundle and dock.session.choice.kind == "fine-tuned"
    wait(qtbot, panel.controls)
    movie = next(layer for layer in dock.viewer.layers if layer.name == "movie")
    preds = movie.metadata["cellclass"]["predictions"]
    assert preds["frame"] == list(range(20)) and set(preds["predicted_class"]) <= set(CLASSES)
    saved = panel.save(tmp_path / "tuned.safetensors")
    reloaded = load_model(saved)
    prov = reloaded.provenance["fine_tune"]
    assert prov["annotations_sha256"] == file_sha256(store.path)
    assert prov["after"]["accuracy"] == outcome.after["accuracy"]
    np.testing.assert_allclose(evaluate_items(reloaded, held[:8], "cpu")["probabilities"],
                               evaluate_items(outcome.bundle, held[:8], "cpu")["probabilities"], atol=1e-5)
    assert panel.undo()
    assert dock.session.choice.kind == "default"
    wait(qtbot, panel.controls)

    # what to label next: the unlabelled planes, most uncertain first; the button moves the slider
    extra = dock.viewer.add_image(images[:6], name="new", rgb=True)
    dock.next.rank()
    wait(qtbot, dock.next.controls)
    ranked = dock.next.ranking.keys
    assert ("new", 0, None) in ranked and not any(k[0] == "movie" for k in ranked)  # movie is all labelled
    assert not any(k[0] == "cells20" for k in ranked)  # has regions: labelled
    key = dock.next.next()
    assert key == ranked[0]
    if key[0] == "new":
        assert dock.viewer.layers.selection.active is extra and dock.viewer.dims.current_step[0] == key[1]

    # regions: 64 px tiles of a 128 px image; the tile under a drawn rectangle is left out
    tiled = np.concatenate([np.concatenate(images[:2], axis=1), np.concatenate(images[2:4], axis=1)], axis=0)
    big = dock.viewer.add_image(tiled, name="big", rgb=True)
    dock.viewer.layers.selection.active = big
    dock.add_layer("regions").add_rectangles(np.array([[70.0, 70.0], [120.0, 120.0]]))
    qtbot.waitUntil(lambda: len(store.items_of("big")) == 1)
    dock.next.unit.setCurrentIndex(1)
    dock.next.rank()
    wait(qtbot, dock.next.controls)
    tiles = [k for k in dock.next.ranking.keys if k[0] == "big"]
    assert sorted(k[2] for k in tiles) == [(0.0, 0.0, 63.0, 63.0), (0.0, 64.0, 63.0, 127.0), (64.0, 0.0, 127.0, 63.0)]
    while True:
        key = dock.next.next()
        if key is None or key[0] == "big":
            break
    assert key is not None and dock.viewer.layers["big next to label"].data[0].shape == (4, 2)


def test_cancel_mid_training_leaves_a_loadable_model(dock, qtbot, tmp_path):
    from napari_cellclass.core.models.modelfile import load_model
    from napari_cellclass.core.inference.predict import predict
    from napari_cellclass.app.finetune_jobs import StartChoice

    store = annotate(dock, qtbot, tmp_path)
    panel = dock.finetune
    panel.start.set_choice(StartChoice("scratch", "senescence_cnn"))
    panel.epochs.setValue(200)
    panel.size.setValue(48)
    steps = []

    def on_step(step):  # stop after the third optimisation step, in the first epoch of 200
        if getattr(step.item, "kind", None) == "step":
            steps.append(step.item)
            if len(steps) == 3:
                panel.controls.cancel_button.click()

    worker = panel.run()
    worker.yielded.connect(on_step)
    wait(qtbot, panel.controls)
    outcome = panel.outcome
    assert outcome is not None and outcome.cancelled and "best model so far" in panel.controls.status.text()
    assert outcome.bundle.provenance["fine_tune"]["cancelled"] is True
    assert 3 <= steps[-1].step < steps[-1].steps  # stopped mid-run
    path = panel.save(tmp_path / "cancelled.safetensors")
    bundle = load_model(path)
    assert bundle.classes == store.class_names and bundle.input_size == (48, 48)
    probs = predict(bundle, np.zeros((64, 64, 3), np.uint8), device="cpu")
    assert probs.shape == (1, 2) and np.isfinite(probs).all()


def test_explain_while_a_fine_tune_holds_the_model(dock, qtbot, tmp_path):
    """Issue 7's matrix: an explain request while fine-tuning the same session model.
    Fine-tuning works on its own copy, so the map of the current model arrives while
    training goes on, and both end cleanly."""
    from napari_cellclass.widgets.explain import ExplainDock

    annotate(dock, qtbot, tmp_path)
    panel = dock.finetune
    panel.epochs.setValue(200)
    steps = []
    worker = panel.run()
    worker.yielded.connect(lambda s: steps.append(s) if getattr(s.item, "kind", None) == "step" else None)
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=240_000)
    explain = ExplainDock(dock.viewer, dock.session)
    source = dock.viewer.layers["movie"]
    explain.image.set_layer(source)
    explain.run()
    qtbot.waitUntil(lambda: not explain.controls.running, timeout=240_000)
    # the feeder adds the map layers on the event loop after the job ends: wait for them, do not race
    qtbot.waitUntil(lambda: any(lay.name.endswith(" · movie") for lay in dock.viewer.layers), timeout=30_000)
    assert panel.controls.running, "the fine-tune should still be running while the map was made"
    panel.controls.cancel_button.click()
    wait(qtbot, panel.controls)
    assert panel.outcome is not None and panel.outcome.cancelled


def test_rank_with_an_ensemble_by_member_disagreement(dock, qtbot, tmp_path):
    """An ensemble model offers (and defaults to) its members' disagreement; the panel's
    order is core.active's on the members' probabilities; a single model offers only
    single-model scores."""
    from napari_cellclass import build_model, predict_members, save_model
    from napari_cellclass.core.annotations.active import ENSEMBLE_METHODS, SINGLE_METHODS, rank
    from napari_cellclass.app.session import ModelChoice

    ens = build_model(["senescence_cnn", "senescence_cnn"], classes=["a", "b", "c"], input_size=(32, 32))
    path = save_model(ens, tmp_path / "ens.safetensors")
    single = save_model(build_model("senescence_cnn", classes=["a", "b", "c"], input_size=(32, 32)),
                        tmp_path / "single.safetensors")
    frames = np.random.default_rng(4).integers(0, 255, (6, 32, 32, 3)).astype(np.uint8)
    viewer, panel, session = dock.viewer, dock.next, dock.session
    movie = viewer.add_image(frames, name="movie", rgb=True)
    dock.open_annotations(tmp_path / "ann.json")
    dock.add_class("a")
    viewer.layers.selection.active = movie
    viewer.dims.set_point(0, 2)
    press(viewer, "1")  # frame 2 is labelled: left out of the ranking
    assert dock.labelled_planes() == {("movie", 2): None}

    session.set_choice(ModelChoice("file", str(path)))  # not loaded yet: the job picks the ensemble's default
    panel.rank()
    wait(qtbot, panel.controls)
    assert panel.ranking.method in ENSEMBLE_METHODS
    assert set(ENSEMBLE_METHODS) <= set(panel.methods()) and panel.method.currentText() == panel.ranking.method
    loaded = session.load()
    members = predict_members(loaded, frames, device="cpu")
    assert members.shape == (2, 6, 3)
    skip = [t == 2 for t in range(6)]
    for method in ("variance", "vote_entropy", "mutual_information"):
        panel.method.setCurrentText(method)
        panel.rank()
        wait(qtbot, panel.controls)
        expect = rank(members, method, keys=[("movie", t, None) for t in range(6)], exclude=skip)
        assert panel.ranking.method == method
        assert panel.ranking.keys == expect.keys and len(expect.keys) == 5
        np.testing.assert_allclose(panel.ranking.scores, expect.scores[expect.order], atol=1e-4)

    session.set_choice(ModelChoice("file", str(single)))
    session.load()
    session.model_loaded.emit(session.cached())
    assert panel.methods() and set(panel.methods()) <= set(SINGLE_METHODS)
    assert panel.method.currentText() == "margin"
    session.set_choice(ModelChoice("file", str(path)))  # loaded before: offered at once, the last pick remembered
    assert panel.method.currentText() == "mutual_information" and "variance" in panel.methods()


def small_start(dock, qtbot, tmp_path):
    """8 frames of 32 px labelled with keys, and the session on a tiny model file with the same classes."""
    from napari_cellclass import build_model, save_model
    from napari_cellclass.app.session import ModelChoice

    viewer = dock.viewer
    images, labels = synth(8, seed=5)
    images = images[:, ::2, ::2]  # 32 px
    movie = viewer.add_image(images, name="movie", rgb=True)
    dock.open_annotations(tmp_path / "ann.json")
    for c in CLASSES:
        dock.add_class(c)
    viewer.layers.selection.active = movie
    viewer.dims.set_point(0, 0)
    for t in range(8):
        press(viewer, str(labels[t] + 1))
    assert len(dock.labelled_planes()) == 8
    path = save_model(build_model("senescence_cnn", classes=CLASSES, input_size=(32, 32)), tmp_path / "small.safetensors")
    choice = ModelChoice("file", str(path))
    dock.session.set_choice(choice)
    panel = dock.finetune
    panel.epochs.setValue(1)
    panel.batch.setValue(4)
    panel.val.setValue(0.25)
    panel.size.setValue(32)
    return panel, movie, images, choice


def test_fine_tune_the_model_file_of_the_session(dock, qtbot, tmp_path):
    """Start "the session's model" when that is a model file: the tuned model starts
    from the file's weights, and provenance names the file."""
    import torch

    from napari_cellclass.core.models.modelfile import load_model
    from napari_cellclass.app.finetune_jobs import StartChoice

    panel, _, _, choice = small_start(dock, qtbot, tmp_path)
    assert panel.start.choice() == StartChoice("model")
    assert panel.run() is not None
    wait(qtbot, panel.controls)
    outcome = panel.outcome
    assert outcome is not None and not outcome.cancelled and outcome.n_train + outcome.n_val == 8
    file_model = load_model(choice.path)
    start = outcome.start.network.state_dict()
    assert all(torch.equal(v, start[k]) for k, v in file_model.network.state_dict().items())  # same classes: no new head
    assert choice.path in outcome.bundle.provenance["fine_tune"]["start"]
    assert outcome.bundle.arch.name == "senescence_cnn" and dock.session.fine_tuned is None  # not kept yet


def test_fine_tune_a_preset_then_discard_keeps_the_session_model(dock, qtbot, tmp_path):
    """A preset with fresh weights trains its own architecture; Discard leaves the
    session on the model it had, and re-classifying uses that model."""
    from napari_cellclass.core.inference.predict import predict
    from napari_cellclass.app.tables import probability_column
    from napari_cellclass.app.finetune_jobs import StartChoice

    panel, movie, images, choice = small_start(dock, qtbot, tmp_path)
    panel.start.set_choice(StartChoice("preset", "senescence-ensemble:scratch-cnn"))
    assert panel.run() is not None
    wait(qtbot, panel.controls)
    outcome = panel.outcome
    assert outcome is not None and outcome.bundle.classes == CLASSES
    assert outcome.bundle.arch.option("widths") == (6, 12, 24)  # the preset's network, not the session's file
    assert "preset senescence-ensemble:scratch-cnn" in outcome.bundle.provenance["fine_tune"]["start"]
    assert panel.keep_button.isEnabled() and panel.discard_button.isEnabled()

    panel.discard()
    assert panel.outcome is None and not panel.keep_button.isEnabled() and not panel.undo_button.isEnabled()
    assert dock.session.choice == choice and dock.session.fine_tuned is None
    assert panel.classify_open_layers() is not None
    wait(qtbot, panel.controls)
    meta = movie.metadata["cellclass"]
    assert meta["model"] == "small.safetensors"
    expect = predict(dock.session.load(choice), images, device="cpu")
    got = np.array([meta["predictions"][probability_column(c)] for c in CLASSES]).T
    np.testing.assert_allclose(got, expect, atol=1e-4)
