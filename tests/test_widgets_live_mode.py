"""Live mode in the fine-tune tab, in a real napari viewer (run under xvfb-run): off by
default; on, a label retrains the head in the background and re-classifies the open
images; nothing changed, nothing retrains; the live model stays pending until Keep."""

from __future__ import annotations

import pytest
from test_widgets_annotate import press
from test_widgets_finetune import CLASSES, annotate

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(annotate_dock):
    return annotate_dock


def _wait_idle(qtbot, live, retrains, timeout=240_000):
    qtbot.waitUntil(lambda: live.retrains == retrains and not live.busy and not live.panel.controls.running
                    and len(live.latencies) == retrains, timeout=timeout)


def test_live_mode_retrains_after_a_label_and_not_while_nothing_changed(dock, qtbot, tmp_path):
    from napari_cellclass.app import layer_data as L
    from napari_cellclass.core.training import feature_cache

    store = annotate(dock, qtbot, tmp_path)
    panel, live = dock.finetune, dock.live
    assert not live.on and live.retrains == 0  # off by default
    panel.epochs.setValue(2)
    panel.augment.setChecked(False)  # one view per image: the second run must compute nothing
    feature_cache.FEATURES.clear()
    live.toggle.setChecked(True)
    _wait_idle(qtbot, live, 1)
    assert panel.outcome is not None and panel.outcome.after is not None  # the held-out comparison still runs
    assert panel.outcome.bundle.provenance["fine_tune"]["options"]["freeze_fraction"] == 1.0
    assert dock.session.fine_tuned is None  # pending: only Keep makes it the session's model
    movie = dock.viewer.layers["movie"]
    assert L.META_KEY in movie.metadata  # the open images were re-classified by the live model
    computed = feature_cache.FEATURES.misses
    assert computed > 0

    qtbot.wait(3 * 400)  # nothing changed: the timer may fire, but no retrain starts
    assert live.retrain() is None and live.retrains == 1

    viewer = dock.viewer
    viewer.layers.selection.active = movie
    viewer.dims.set_point(0, 0)
    old = store.image_labels("movie", 0)[0]
    press(viewer, str(2 - CLASSES.index(old)))  # the other class on frame 0: a changed label
    assert store.image_labels("movie", 0)[0] != old
    _wait_idle(qtbot, live, 2)
    assert feature_cache.FEATURES.misses == computed  # the same images: every feature from the cache
    assert all(t > 0 for t in live.latencies)

    pending = panel.outcome.bundle
    qtbot.waitUntil(lambda: not panel.controls.running and not dock.next.controls.running, timeout=240_000)
    assert dock.next.ranking is not None  # "what to label next" was re-ranked by the live model
    assert panel.keep() and dock.session.fine_tuned is pending
    qtbot.waitUntil(lambda: not panel.controls.running, timeout=240_000)  # keeping re-classifies
    assert panel.undo() and dock.session.fine_tuned is None
    qtbot.waitUntil(lambda: not panel.controls.running, timeout=240_000)


def test_turning_live_mode_off_stops_watching(dock, qtbot, tmp_path):
    store = annotate(dock, qtbot, tmp_path)
    live = dock.live
    live.toggle.setChecked(True)
    live.toggle.setChecked(False)
    qtbot.waitUntil(lambda: not dock.finetune.controls.running, timeout=240_000)
    before = live.retrains
    store.add_class("third")
    qtbot.wait(3 * 400)
    assert live.retrains == before and live.retrain() is None


def test_live_mode_freezes_the_collector_and_shortens_the_switch_interval_while_any_toggle_is_on():
    import gc
    import sys

    from napari_cellclass.widgets.live_mode import SWITCH_INTERVAL_S, responsive

    before = sys.getswitchinterval()
    gc.unfreeze()
    responsive(1, True)
    responsive(2, True)
    assert gc.get_freeze_count() > 0 and sys.getswitchinterval() == min(before, SWITCH_INTERVAL_S)
    responsive(1, False)
    assert gc.get_freeze_count() > 0  # another toggle is still on
    responsive(2, False)
    assert gc.get_freeze_count() == 0 and sys.getswitchinterval() == before
    responsive(2, False)  # turning off twice changes nothing
    assert sys.getswitchinterval() == before
