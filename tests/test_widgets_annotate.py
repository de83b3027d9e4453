"""The annotate tab in a real napari viewer (run under xvfb-run): keys, shapes,
points, painted pixels, the table, folders as stacks, persistence."""

from __future__ import annotations

import os

import numpy as np
import pytest

import napari_cellclass.widgets.runner  # noqa: F401  (as napari would: docks before torch)

pytestmark = pytest.mark.gui


@pytest.fixture
def session():
    from napari_cellclass.app.session import Session

    return Session()


@pytest.fixture
def make_dock(make_napari_viewer, session):
    from napari_cellclass.widgets.annotate import AnnotateDock

    def make(viewer=None):
        viewer = viewer or make_napari_viewer()
        dock = AnnotateDock(viewer, session)
        viewer.window.add_dock_widget(dock, name="Annotate")
        return dock

    return make


def press(viewer, key: str, *modifiers: str) -> None:
    """A real key press on the canvas, as a user types it (modifiers: "Alt", "Control", "Shift")."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    mods = Qt.KeyboardModifier.NoModifier
    for m in modifiers:
        mods |= getattr(Qt.KeyboardModifier, f"{m}Modifier")
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, getattr(Qt.Key, f"Key_{key}"), mods)
    QApplication.processEvents()


def stack(n=4, size=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, size, size), dtype=np.uint8)


def test_keys_label_frames_and_survive_closing_the_viewer(make_dock, make_napari_viewer, tmp_path, qtbot):
    dock = make_dock()
    viewer = dock.viewer
    data = stack()
    layer = viewer.add_image(data, name="movie")
    dock.open_annotations(tmp_path / "ann.json")
    assert dock.add_class("round") and dock.add_class("spread")
    assert dock.classes.list.count() == 2 and dock.classes.list.item(0).text().startswith("1")

    viewer.layers.selection.active = layer
    viewer.dims.set_point(0, 0)
    press(viewer, "1")  # frame 0 → round, and the slider moves on
    assert viewer.dims.current_step[0] == 1
    press(viewer, "2")  # frame 1 → spread
    press(viewer, "2")  # frame 2 → spread
    store = dock.store
    key = store.find_image(name="movie")
    assert [store.image_labels(key, t) for t in range(4)] == [("round",), ("spread",), ("spread",), ()]
    assert dock.table.view.rowCount() == 3 and "round: 1" in dock.table.counts.text()
    assert layer.mode == "pan_zoom"  # napari's own 1/2 (mode keys) did not fire on the labelled layer

    # the same key again on a labelled frame removes the label (single-label list)
    viewer.dims.set_point(0, 2)
    dock.controller.advance = False
    press(viewer, "2")
    assert store.image_labels(key, 2) == ()
    dock.undo()
    assert store.image_labels(key, 2) == ("spread",)

    # closing the panel gives napari its keys back
    n = len(store.items)
    dock.controller.close()
    viewer.layers.selection.active = layer
    press(viewer, "2")
    assert len(store.items) == n and layer.mode == "transform"  # napari's own key 2 on an image layer

    # a new viewer, the same image, the same file: everything is back
    viewer.close()
    dock2 = make_dock(make_napari_viewer())
    dock2.viewer.add_image(data, name="movie")
    dock2.open_annotations(tmp_path / "ann.json")
    s2 = dock2.store
    k2 = s2.find_image(name="movie")
    assert s2.class_names == ["round", "spread"]
    assert [s2.image_labels(k2, t) for t in range(3)] == [("round",), ("spread",), ("spread",)]
    assert dock2.table.view.rowCount() == 3


def test_shapes_and_points_become_region_items_with_the_right_crops(make_dock, tmp_path, qtbot):
    from napari_cellclass.core.annotations import training_samples

    dock = make_dock()
    viewer = dock.viewer
    img = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    image = viewer.add_image(img, name="cells", scale=(0.5, 0.5))
    dock.open_annotations(tmp_path / "ann.json")
    dock.add_class("healthy"), dock.add_class("dead")
    viewer.layers.selection.active = image
    shapes = dock.add_layer("regions")
    assert shapes is not None and tuple(shapes.scale) == (0.5, 0.5)
    dock.classes.set_current("dead")
    shapes.add_rectangles(np.array([[10.0, 20.0], [29.0, 35.0]]))
    qtbot.waitUntil(lambda: len(dock.store.items) == 1)
    item = dock.store.items[0]
    assert item.kind == "rectangle" and item.label == "dead" and item.box == (10.0, 20.0, 29.0, 35.0)
    [sample] = training_samples(dock.store)
    np.testing.assert_array_equal(sample.image[0], img[10:30, 20:36])  # pixel centres inside the box
    assert sample.labels == [1] and sample.image.dtype == np.uint16

    shapes.add_polygons([np.array([[40.0, 40.0], [40.0, 60.0], [60.0, 50.0]])])
    qtbot.waitUntil(lambda: len(dock.store.items) == 2)
    qtbot.waitUntil(lambda: len(shapes.data) == 2 and int(shapes.features["id"].iloc[1]) > 0)
    # select the polygon, press Alt+1: it becomes "healthy" (plain 1 is napari's vertex-remove mode)
    viewer.layers.selection.active = shapes
    shapes.selected_data = {1}
    press(viewer, "1", "Alt")
    assert dock.store.items[-1].kind == "polygon" and dock.store.items[-1].label == "healthy"
    # deleting a shape in the layer deletes the annotation
    shapes.selected_data = {0}
    shapes.remove_selected()
    qtbot.waitUntil(lambda: [it.kind for it in dock.store.items] == ["polygon"])

    dock.crop.setValue(16)
    points = dock.add_layer("points")
    dock.classes.set_current("healthy")
    points.add(np.array([[2.0, 30.0]]))
    qtbot.waitUntil(lambda: any(it.kind == "point" for it in dock.store.items))
    point = next(it for it in dock.store.items if it.kind == "point")
    assert point.size == (16, 16) and point.label == "healthy"
    crop = next(s for s in training_samples(dock.store) if "point" in s.name).image[0]
    assert crop.shape == (16, 16)
    np.testing.assert_array_equal(crop[8], img[2, 22:38])  # the point's row, centred
    np.testing.assert_array_equal(crop[0], img[6, 22:38])  # reflected above the border

    # the table jumps to an item and deletes it
    r = dock.table.row_of(point.id)
    dock.table.view.selectRow(r)
    dock.table.jump_button.click()
    assert viewer.layers.selection.active is image
    dock.table.delete_button.click()
    qtbot.waitUntil(lambda: not any(it.kind == "point" for it in dock.store.items))
    qtbot.waitUntil(lambda: len(points.data) == 0)


def test_painted_pixels_are_stored_per_frame(make_dock, tmp_path, qtbot):
    dock = make_dock()
    viewer = dock.viewer
    image = viewer.add_image(stack(3, 48), name="planes")
    dock.open_annotations(tmp_path / "ann.json")
    dock.add_class("nucleus"), dock.add_class("cytoplasm")
    viewer.layers.selection.active = image
    labels = dock.add_layer("pixels")
    assert labels.data.shape == (3, 48, 48)
    viewer.dims.set_point(0, 1)
    press(viewer, "2", "Alt")  # on the Labels layer: paint with class 2 (plain 2 is napari's paint mode)
    assert labels.selected_label == 2
    labels.brush_size = 5
    labels.paint((1, 20, 20), labels.selected_label)
    key = dock.store.find_image(name="planes")
    qtbot.waitUntil(lambda: dock.store.pixel_labels(key, 1) is not None)
    mask = dock.store.pixel_labels(key, 1)
    assert mask is not None and mask[20, 20] == 2 and (mask == 2).sum() > 5
    assert dock.store.pixel_labels(key, 0) is None


def test_a_folder_opens_as_one_lazy_stack_with_annotations_beside_it(make_dock, tmp_path, qtbot):
    import tifffile

    folder = tmp_path / "plate"
    folder.mkdir()
    for i in range(5):
        tifffile.imwrite(folder / f"well_{i}.tif", stack(1, 40, seed=i)[0])
    dock = make_dock()
    viewer = dock.viewer
    dock.open_annotations(tmp_path / "elsewhere.json")
    layer = dock.open_folder(folder)
    assert layer.data.shape == (5, 40, 40) and layer.data.reads <= 2  # not every file read
    assert dock.store.path == (folder / "annotations.json").resolve()
    dock.add_class("a"), dock.add_class("b")
    viewer.layers.selection.active = layer
    viewer.dims.set_point(0, 3)
    press(viewer, "2")
    key = dock.store.find_image(path=folder / "well_3.tif")
    assert key is not None and dock.store.image_labels(key, 0) == ("b",)
    assert dock.store.image(key).origin == "file" and dock.store.image(key).path == "well_3.tif"
    assert len(dock.store.images) == 1  # only the labelled file was registered

    # a region drawn on plane 1 belongs to well_1.tif, at the file's own pixel coordinates
    shapes = dock.add_layer("regions")
    shapes.add_rectangles(np.array([[1.0, 5.0, 6.0], [1.0, 5.0, 20.0], [1.0, 15.0, 20.0], [1.0, 15.0, 6.0]]))
    qtbot.waitUntil(lambda: len(dock.store.items) == 2)
    key1 = dock.store.find_image(path=folder / "well_1.tif")
    [item] = dock.store.items_of(key1)
    assert item.kind == "rectangle" and item.frame == 0 and item.box == (5.0, 6.0, 15.0, 20.0)
    from napari_cellclass.core.annotations import training_samples

    crop = next(s for s in training_samples(dock.store) if s.image_key == key1).image[0]
    np.testing.assert_array_equal(crop, stack(1, 40, seed=1)[0][5:16, 6:21])


def test_a_failed_or_interrupted_write_keeps_the_last_good_file(make_dock, make_napari_viewer, tmp_path, monkeypatch):
    from napari_cellclass.core.annotations import AnnotationStore

    dock = make_dock()
    viewer = dock.viewer
    layer = viewer.add_image(stack(), name="movie")
    dock.open_annotations(tmp_path / "ann.json")
    dock.add_class("a"), dock.add_class("b")
    dock.controller.key(1, layer)
    good = (tmp_path / "ann.json").read_bytes()

    def crash(*a, **kw):
        raise KeyboardInterrupt("killed between writing and renaming")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        dock.store.apply_key(dock.store.find_image(name="movie"), 2, "2")
    monkeypatch.undo()
    assert (tmp_path / "ann.json").read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # a full disk: the change is kept in memory, the panel says so, the next change saves it
    import errno

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    viewer.dims.set_point(0, 3)
    assert dock.controller.key(2, layer) is None  # a notification, not an exception
    assert dock.store.unsaved and "NOT SAVED" in dock.file_label.text()
    assert (tmp_path / "ann.json").read_bytes() == good
    monkeypatch.undo()
    dock.store.save()
    reopened = AnnotationStore.open(tmp_path / "ann.json")
    assert reopened.image_labels("movie", 3) == ("b",) and len(reopened.items) == len(dock.store.items)


def test_class_edits_recolour_layers_and_export_reads_back(make_dock, tmp_path, qtbot):
    from napari_cellclass.core.annotations import hex_to_rgba
    from napari_cellclass.core.data import load_dataset

    dock = make_dock()
    viewer = dock.viewer
    movie = viewer.add_image(stack(6, 48), name="movie")
    dock.open_annotations(tmp_path / "ann.json")
    dock.add_class("a"), dock.add_class("b"), dock.add_class("c")
    assert not dock.add_class("A")  # duplicate (case-insensitive): a notification, nothing added
    viewer.layers.selection.active = movie
    viewer.dims.set_point(0, 0)
    for k in "121233":
        press(viewer, k)
    shapes = dock.add_layer("regions")
    dock.classes.set_current("b")
    shapes.add_rectangles(np.array([[0.0, 4.0, 4.0], [0.0, 4.0, 30.0], [0.0, 30.0, 30.0], [0.0, 30.0, 4.0]]))
    qtbot.waitUntil(lambda: len(dock.store.items) == 7)

    assert dock.classes.rename("b", "bright")
    assert dock.store.image_labels("movie", 1) == ("bright",)
    assert dock.classes.set_color("bright", "#ff0000")
    qtbot.waitUntil(lambda: np.allclose(shapes.edge_color[0], hex_to_rgba("#FF0000")))
    assert shapes.features["label"].iloc[0] == "bright"
    shapes.add_rectangles(np.array([[1.0, 4.0, 4.0], [1.0, 4.0, 20.0], [1.0, 20.0, 20.0], [1.0, 20.0, 4.0]]))
    qtbot.waitUntil(lambda: len(dock.store.items) == 8)
    assert dock.store.items[-1].label == "bright"  # the current class followed the rename
    assert not dock.classes.remove("c")  # still has annotations: refused with a notification
    assert dock.classes.remove("c", reassign_to="a")
    assert dock.store.class_names == ["a", "bright"] and dock.store.image_labels("movie", 5) == ("a",)

    report = dock.export(tmp_path / "dataset")
    assert report is not None and report.counts == {"a": 4, "bright": 4}
    ds = load_dataset(tmp_path / "dataset")
    assert sorted(ds.classes) == ["a", "bright"] and len(ds) == 8

    dock.undo()  # undo the class removal: "c" and its labels are back
    assert dock.store.class_names == ["a", "bright", "c"] and dock.store.image_labels("movie", 5) == ("c",)
    shapes.selected_data = {0}
    shapes.remove_selected()
    qtbot.waitUntil(lambda: len(dock.store.items) == 7)
    dock.undo()  # the rectangle comes back, in the layer too
    qtbot.waitUntil(lambda: len(shapes.data) == 2)


def test_moving_a_shape_or_point_keeps_its_id_in_one_undo_step(make_dock, tmp_path, qtbot):
    """Issue 19 item 8: a moved region is the same annotation (it used to be deleted and
    re-added under a new id, in two undo steps)."""
    dock = make_dock()
    viewer = dock.viewer
    image = viewer.add_image(np.zeros((64, 64), np.uint8), name="cells")
    dock.open_annotations(tmp_path / "ann.json")
    dock.add_class("a")
    viewer.layers.selection.active = image
    shapes = dock.add_layer("regions")
    shapes.add_rectangles(np.array([[10.0, 20.0], [29.0, 35.0]]))
    qtbot.waitUntil(lambda: len(dock.store.items) == 1 and int(shapes.features["id"].iloc[0]) > 0)
    first = dock.store.items[0]
    shapes.data = [np.array([[12.0, 22.0], [12.0, 37.0], [31.0, 37.0], [31.0, 22.0]])]  # dragged by (2, 2)
    qtbot.waitUntil(lambda: dock.store.items[0].box == (12.0, 22.0, 31.0, 37.0))
    moved = dock.store.items[0]
    assert len(dock.store.items) == 1 and moved.id == first.id and moved.label == "a"
    assert dock.store.undo_description == f"move rectangle {first.id}"
    dock.store.undo()
    assert dock.store.items == [first]
    viewer.layers.selection.active = image
    points = dock.add_layer("points")
    points.add(np.array([[5.0, 5.0]]))
    qtbot.waitUntil(lambda: any(it.kind == "point" for it in dock.store.items) and len(points.features["id"]) == 1
                    and int(points.features["id"].iloc[0]) > 0)
    point = next(it for it in dock.store.items if it.kind == "point")
    points.data = np.array([[9.0, 7.0]])
    qtbot.waitUntil(lambda: dock.store.item(point.id).center == (9.0, 7.0))
    assert [it.id for it in dock.store.items] == [first.id, point.id] and dock.store.item(point.id).size == point.size
