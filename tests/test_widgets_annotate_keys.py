"""napari's own undo/redo and shortcuts next to the annotate panel (run under xvfb-run):
the annotation file follows Ctrl+Z / Ctrl+Shift+Z on the pixels layer, napari's
documented Labels keys keep working there, and the panel's keys are Alt+1–9,
1–9 on images and Ctrl+Alt+Z."""

from __future__ import annotations

import numpy as np
import pytest
from test_widgets_annotate import press, stack

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(annotate_dock):
    return annotate_dock


def _messages():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def _file_planes(store, key, n):
    return [store.pixel_labels(key, t) for t in range(n)]


def _equal_to_layer(store, key, labels) -> bool:
    """The annotation file (re-read from disk) holds exactly the layer's pixels."""
    from napari_cellclass.core.annotations import AnnotationStore

    disk = AnnotationStore.open(store.path)
    for t in range(labels.data.shape[0]):
        stored = disk.pixel_labels(key, t)
        shown = np.asarray(labels.data[t])
        if stored is None:
            if shown.any():
                return False
        elif not np.array_equal(stored, shown):
            return False
    return True


def test_native_undo_and_redo_keep_the_file_equal_to_the_layer(dock, qtbot, tmp_path):
    viewer = dock.viewer
    image = viewer.add_image(stack(3, 48), name="planes")
    dock.open_annotations(tmp_path / "ann.json")
    dock.add_class("nucleus"), dock.add_class("cytoplasm")
    viewer.layers.selection.active = image
    labels = dock.add_layer("pixels")
    assert labels.name == "pixels · planes"  # the kind first: the layer list cuts long names
    assert labels.metadata["cellclass_annotation"]["title"] == "pixels annotations of 'planes'"
    key = dock.store.find_image(name="planes")
    viewer.dims.set_point(0, 1)
    labels.brush_size = 7
    labels.selected_label = 2
    labels.paint((1, 20, 20), 2)
    qtbot.waitUntil(lambda: dock.store.pixel_labels(key, 1) is not None)
    labels.paint((1, 35, 35), 1)  # a second stroke, on the same plane
    qtbot.waitUntil(lambda: (dock.store.pixel_labels(key, 1) == 1).any())
    two = np.array(labels.data[1])
    assert (two == 1).sum() > 5 and (two == 2).sum() > 5

    viewer.layers.selection.active = labels
    press(viewer, "Z", "Control")  # napari's undo: the second stroke goes from the layer ...
    assert not (np.asarray(labels.data[1]) == 1).any() and (np.asarray(labels.data[1]) == 2).any()
    qtbot.waitUntil(lambda: not (dock.store.pixel_labels(key, 1) == 1).any())  # ... and from the file
    assert _equal_to_layer(dock.store, key, labels)

    press(viewer, "Z", "Control")  # and the first: the file has no painted pixels left
    qtbot.waitUntil(lambda: dock.store.pixel_labels(key, 1) is None)
    assert not np.asarray(labels.data).any() and _equal_to_layer(dock.store, key, labels)
    assert not dock.store.items_of(key, 1, "pixels")  # nothing to train on

    press(viewer, "Z", "Control", "Shift")  # napari's redo brings the first stroke back, in the file too
    qtbot.waitUntil(lambda: dock.store.pixel_labels(key, 1) is not None)
    assert (np.asarray(labels.data[1]) == 2).any() and _equal_to_layer(dock.store, key, labels)
    viewer.dims.set_point(0, 0)  # a redo while another plane is shown still lands on its own plane
    press(viewer, "Z", "Control", "Shift")
    qtbot.waitUntil(lambda: (dock.store.pixel_labels(key, 1) == 1).any())
    np.testing.assert_array_equal(dock.store.pixel_labels(key, 1), two)
    assert _file_planes(dock.store, key, 3)[0] is None and _equal_to_layer(dock.store, key, labels)

    # the panel's Undo (Ctrl+Alt+Z) undoes the last file change and redraws the layer from it
    press(viewer, "Z", "Control", "Alt")
    qtbot.waitUntil(lambda: not (np.asarray(labels.data[1]) == 1).any())
    assert _equal_to_layer(dock.store, key, labels)
    assert any(m.startswith("undone: painting on 'planes', frame 1") for m in _messages())


def test_napari_labels_keys_work_on_the_pixels_layer_and_classes_take_alt(dock, qtbot, tmp_path):
    viewer = dock.viewer
    image = viewer.add_image(stack(4, 48), name="movie")
    dock.open_annotations(tmp_path / "ann.json")
    for c in ("a", "b", "c", "d"):
        dock.add_class(c)
    viewer.layers.selection.active = image
    labels = dock.add_layer("pixels")
    store = dock.store
    before = len(_messages())
    for digit, mode in (("4", "fill"), ("1", "erase"), ("3", "polygon"), ("5", "pick"), ("6", "pan_zoom"),
                        ("2", "paint")):
        press(viewer, digit)  # napari's documented Labels keys, not the panel's
        assert labels.mode == mode, (digit, labels.mode)
    press(viewer, "F")
    assert labels.mode == "fill"
    assert not store.items and not any("no class has the key" in m for m in _messages()[before:])

    press(viewer, "3", "Alt")  # Alt+3 picks class 3 for the strokes
    assert labels.selected_label == 3 and dock.controller.current_class == "c" and dock.classes.current() == "c"
    labels.selected_label = 2  # napari's own label spin box / picker: class 2 is current in the panel
    assert dock.controller.current_class == "b" and dock.classes.current() == "b"
    press(viewer, "9")  # a digit napari does not bind on Labels: nothing is labelled
    assert not store.items

    # on the image, 1–9 still label the frame (and Alt+1–9 too)
    viewer.layers.selection.active = image
    viewer.dims.set_point(0, 0)
    press(viewer, "2")
    press(viewer, "4", "Alt")
    key = store.find_image(name="movie")
    assert [store.image_labels(key, t) for t in range(3)] == [("b",), ("d",), ()]
    press(viewer, "Z", "Control", "Alt")
    assert store.image_labels(key, 1) == ()
    # a map layer (made from the image) is not annotated: its digits label nothing
    cam = viewer.add_image(np.zeros((48, 48), np.float32), name="a map",
                           metadata={"cellclass": {"source": "movie"}})
    viewer.layers.selection.active = cam
    n = len(store.items)
    press(viewer, "5")
    assert len(store.items) == n and store.find_image(name="a map") is None
    assert any(m == "undone: labelling 'movie', frame 1 as d" for m in _messages())
    from qtpy.QtWidgets import QGroupBox

    assert "Ctrl+Alt+Z" in dock.undo_button.toolTip()
    box = next(g for g in dock.findChildren(QGroupBox) if g.title().startswith("classes"))
    assert "Alt+1–9" in box.title() and "4 fill" in box.toolTip() and "Ctrl+Z" in box.toolTip()


def test_regions_layer_keeps_napari_keys_and_alt_relabels_the_selection(dock, qtbot, tmp_path):
    viewer = dock.viewer
    image = viewer.add_image(stack(1, 64)[0], name="one")
    dock.open_annotations(tmp_path / "ann.json")
    dock.add_class("a"), dock.add_class("b")
    viewer.layers.selection.active = image
    shapes = dock.add_layer("regions")
    shapes.add_rectangles(np.array([[2.0, 2.0], [30.0, 30.0]]))
    qtbot.waitUntil(lambda: len(dock.store.items) == 1)
    press(viewer, "5")  # napari's select mode on Shapes
    assert shapes.mode == "select"
    shapes.selected_data = {0}
    press(viewer, "2", "Alt")
    qtbot.waitUntil(lambda: dock.store.items[0].label == "b")
    assert dock.controller.current_class == "b"


def test_undo_messages_name_what_the_user_did(tmp_path):
    from napari_cellclass.app.undo_words import in_words
    from napari_cellclass.core.annotations import AnnotationStore

    store = AnnotationStore.open(tmp_path / "ann.json")
    store.add_class("round")
    key = store.add_image(np.zeros((3, 32, 32), np.uint8), name="my movie", channel_axis="none")
    single = store.add_image(np.zeros((32, 32), np.uint8), name="cells.tif")
    store.add_rectangle(single, 0, "round", (1, 1, 10, 10))
    item_id = store.items[-1].id
    store.add_class("flat")
    store.relabel(item_id, "flat")
    store.label_image(key, 2, "round")
    mask = np.zeros((32, 32), np.uint8)
    mask[3:9, 3:9] = 1
    store.set_pixel_labels(single, 0, mask)
    said = [in_words(store, store.undo()) for _ in range(5)]
    assert said == ["painting on 'cells.tif'", "labelling 'my movie', frame 2 as round",
                    "giving a rectangle the class 'flat'", "adding the class 'flat'",
                    "drawing a rectangle of class 'round'"]
    assert in_words(store, "something new") == "something new" and in_words(store, None) is None
