"""app.channels without a viewer: the metadata's channel axis, layers stacked as channels,
and engine messages reworded for the docks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellclass.app.channels import (
    ChannelStack,
    dock_text,
    for_docks,
    metadata_channel_axis,
)
from napari_cellclass.core.errors import ChannelMismatchError, ImageError
from napari_cellclass.core.io.images import get_plane, guess_layout, match_channels


def test_metadata_settles_the_channel_axis():
    sample = {"cellclass_sample": {"axes": "CYX", "channel_names": ["a", "b", "c", "d"]}}
    assert metadata_channel_axis((4, 64, 64), False, sample) == 0
    assert metadata_channel_axis((3, 4, 64, 64), False, {"channel_names": ["a", "b", "c", "d"]}) == 1
    assert metadata_channel_axis((4, 4, 64, 64), False, {"channel_names": list("abcd")}) is None  # two fit
    assert metadata_channel_axis((4, 64, 64), False, {"channel_axis": 0}) == 0
    assert metadata_channel_axis((64, 64, 3), True, sample) is None  # RGB: napari's flag decides
    assert metadata_channel_axis((5, 64, 64), False, {}) is None


@pytest.mark.parametrize("shape", [(48, 64), (3, 48, 64)])
def test_a_channel_stack_reads_like_the_stacked_array(shape):
    rng = np.random.default_rng(0)
    arrays = [rng.random(shape).astype(np.float32) for _ in range(4)]
    axis = len(shape) - 2
    stack = ChannelStack(arrays, axis)
    full = np.stack(arrays, axis=axis)
    assert stack.shape == full.shape and stack.dtype == full.dtype
    layout = guess_layout(stack.shape, axis)
    for t in range(layout.n_frames):
        np.testing.assert_array_equal(get_plane(stack, layout, t), get_plane(full, layout, t))
    region = (slice(3, 20), slice(5, 9))
    np.testing.assert_array_equal(get_plane(stack, layout, 0, region=region), get_plane(full, layout, 0, region=region))
    np.testing.assert_array_equal(np.asarray(stack), full)


def test_engine_messages_are_reworded_for_the_channel_picker():
    with pytest.raises(ImageError) as layout_err:
        guess_layout((5, 40, 40), "auto", 3)
    with pytest.raises(ChannelMismatchError) as count_err:
        match_channels(np.zeros((4, 8, 8), np.float32), 3, [0, 1])
    for err in (layout_err.value, count_err.value):
        assert "channel_axis=" in str(err) or "exactly" in str(err)
        docked = for_docks(err)
        assert type(docked) is type(err) and docked.problem == err.problem
        assert "channel picker" in str(docked) and "channel_axis=" not in str(docked)
        assert dock_text(str(err)) == str(docked)
    assert "tick 3 channel(s)" in str(for_docks(count_err.value))
    assert dock_text("nothing to do with channels") == "nothing to do with channels"
