"""Nothing annotated is lost: crashes mid-write, damaged files, read-only folders,
full disks and other programs never destroy the last good annotation file."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import napari_cellclass
from napari_cellclass.core.annotations import (AnnotationFileError, AnnotationSaveError, AnnotationStore,
                                               AnnotationWarning)

SRC = str(Path(napari_cellclass.__file__).parent.parent)


def _store(tmp_path, n_items=0):
    s = AnnotationStore.open(tmp_path / "ann.json")
    s.add_class("a")
    s.add_class("b")
    k = s.add_image(np.zeros((64, 64), np.uint8), name="img")
    for i in range(n_items):
        s.add_point(k, 0, "a", (i % 64, 5), 8)
    return s, k


def test_crash_inside_replace_leaves_the_previous_complete_file(tmp_path, monkeypatch):
    s, k = _store(tmp_path, 3)
    before = s.path.read_bytes()

    def crash(*a, **kw):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        s.add_point(k, 0, "b", (10, 10), 8)
    monkeypatch.undo()
    assert s.path.read_bytes() == before
    assert [p.name for p in s.folder.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left behind
    assert len(AnnotationStore.open(s.path).items) == 3


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {src!r})
    import numpy as np
    from napari_cellclass.core.annotations import AnnotationStore
    s = AnnotationStore.open({path!r})
    s.add_class("a")
    k = s.add_image(np.zeros((64, 64), np.uint8), name="img")
    print("ready", flush=True)
    i = 0
    while True:
        s.add_rectangle(k, 0, "a", (i % 50, 0, i % 50 + 5, 5 + i))
        i += 1
""")


def test_killing_a_writer_at_random_moments_always_leaves_a_valid_prefix(tmp_path):
    rng = np.random.default_rng(1)
    written = 0
    for trial in range(4):
        path = tmp_path / f"kill{trial}.json"
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(src=SRC, path=str(path))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(float(rng.uniform(0.05, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        s = AnnotationStore.open(path)  # parses, validates
        boxes = [it.box for it in s.items]
        assert boxes == [(i % 50, 0, i % 50 + 5, 5 + i) for i in range(len(boxes))]  # a prefix of the changes
        ids = [it.id for it in s.items]
        assert ids == sorted(set(ids)) and (not ids or ids[-1] - ids[0] == len(ids) - 1)
        written += len(boxes)
    assert written > 0  # the kills landed while the writer was writing


@pytest.mark.parametrize("content, match", [
    (b'{"format": "napari-cellclass-annotations", "version": 1, "classes": [', "not valid JSON"),
    (b'{"some": "other program"}', "not a napari-cellclass annotation file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a readable annotation file"),
    (b'{"format": "napari-cellclass-annotations", "version": 99}', "newer"),
    (b'{"format": "napari-cellclass-annotations", "version": 1, "classes": [{"name": "a", "color": "#000000"}],'
     b' "images": {}, "items": [{"id": 1, "kind": "image", "image": "x", "frame": 0, "labels": ["a"],'
     b' "created": "t"}]}', "not listed"),
])
def test_bad_files_are_named_and_never_overwritten(tmp_path, content, match):
    path = tmp_path / "ann.json"
    path.write_bytes(content)
    with pytest.raises(AnnotationFileError, match=match) as err:
        AnnotationStore.open(path)
    assert str(path) in str(err.value)
    assert path.read_bytes() == content
    with pytest.warns(AnnotationWarning, match="left untouched"):
        s = AnnotationStore.open(path, on_bad="new_file")
    assert s.path == tmp_path / "ann-new.json" and str(path) in s.notice
    s.add_class("x")
    assert path.read_bytes() == content
    assert json.loads(s.path.read_text())["classes"][0]["name"] == "x"
    with pytest.warns(AnnotationWarning):
        assert AnnotationStore.open(path, on_bad="new_file").path == tmp_path / "ann-new-2.json"


def _fail_with(monkeypatch, err_no):
    import tempfile

    def refuse(*a, **kw):
        raise OSError(err_no, os.strerror(err_no))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("err_no, reason", [(errno.EACCES, "permission denied"), (errno.ENOSPC, "disk is full"),
                                             (errno.EROFS, "read-only")])
def test_failed_write_keeps_old_file_and_change_in_memory(tmp_path, monkeypatch, err_no, reason):
    s, k = _store(tmp_path, 2)
    before = s.path.read_bytes()
    _fail_with(monkeypatch, err_no)
    with pytest.raises(AnnotationSaveError, match=reason) as err:
        s.add_point(k, 0, "b", (10, 10), 8)
    assert "previous file is intact" in str(err.value) and "Save as" in str(err.value)
    assert s.path.read_bytes() == before and s.unsaved and len(s.items) == 3
    monkeypatch.undo()
    s.apply_key(k, 0, "1")  # the next change saves everything
    assert not s.unsaved and len(AnnotationStore.open(s.path).items) == 4


def test_disk_full_during_fsync(tmp_path, monkeypatch):
    s, k = _store(tmp_path, 1)
    before = s.path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(AnnotationSaveError, match="disk is full"):
        s.add_point(k, 0, "b", (10, 10), 8)
    monkeypatch.undo()
    assert s.path.read_bytes() == before
    assert not [p for p in s.folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_real_read_only_folder(tmp_path):
    s, k = _store(tmp_path, 1)
    before = s.path.read_bytes()
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(AnnotationSaveError, match="permission denied"):
            s.add_point(k, 0, "b", (10, 10), 8)
        assert s.path.read_bytes() == before
    finally:
        os.chmod(tmp_path, 0o755)


def test_save_as_moves_everything_to_a_writable_place(tmp_path, monkeypatch):
    s, k = _store(tmp_path / "one", 1)
    s.set_pixel_labels(k, 0, np.eye(64, dtype=np.uint8) * 2)
    _fail_with(monkeypatch, errno.EACCES)
    with pytest.raises(AnnotationSaveError):
        s.add_point(k, 0, "b", (10, 10), 8)
    monkeypatch.undo()
    s.save_as(tmp_path / "two" / "moved.json")
    s2 = AnnotationStore.open(tmp_path / "two" / "moved.json")
    assert len(s2.items) == 3
    np.testing.assert_array_equal(s2.pixel_labels(k, 0), np.eye(64, dtype=np.uint8) * 2)
    np.testing.assert_array_equal(np.asarray(s2.pixels(k)), 0)
    assert len(AnnotationStore.open(tmp_path / "one" / "ann.json").items) == 2  # the old file stays


def test_file_changed_by_another_program_is_not_overwritten(tmp_path):
    s, k = _store(tmp_path, 1)
    other = AnnotationStore.open(s.path)
    other.add_class("from other program")
    theirs = s.path.read_bytes()
    with pytest.raises(AnnotationSaveError, match="changed by another program"):
        s.add_point(k, 0, "b", (10, 10), 8)
    assert s.path.read_bytes() == theirs and s.unsaved


def test_write_through_latency_is_recorded(tmp_path):
    s, k = _store(tmp_path, 5)
    assert 0 < s.last_write_s < 60


def test_failed_mask_write_changes_nothing(tmp_path, monkeypatch):
    s, k = _store(tmp_path)
    s.set_pixel_labels(k, 0, np.eye(64, dtype=np.uint8))
    before = s.path.read_bytes()
    _fail_with(monkeypatch, errno.ENOSPC)
    with pytest.raises(AnnotationSaveError, match="painted labels.*disk is full"):
        s.set_pixel_labels(k, 0, np.eye(64, dtype=np.uint8) * 2)
    monkeypatch.undo()
    assert s.path.read_bytes() == before and not s.unsaved
    np.testing.assert_array_equal(s.pixel_labels(k, 0), np.eye(64, dtype=np.uint8))
