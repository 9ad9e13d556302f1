from __future__ import annotations

import math

import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.windows import transform as window_transform

from geounet.errors import ChipSizeError
from geounet.grid import ChipGrid, axis_offsets


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 3000),
    chip=st.integers(1, 600),
    stride_frac=st.floats(0.05, 1.0),
    edge=st.sampled_from(["shift", "pad"]),
)
def test_axis_offsets_cover_everything_once(size, chip, stride_frac, edge):
    stride = max(1, int(chip * stride_frac))
    if size < chip and edge == "shift":
        with pytest.raises(ChipSizeError, match="larger than the scene"):
            axis_offsets(size, chip, stride, edge)
        return
    offsets = axis_offsets(size, chip, stride, edge)
    assert offsets == sorted(set(offsets)), "no duplicate chips"
    assert offsets[0] == 0
    # Every pixel is inside some chip (full coverage, right/bottom edge included).
    covered = set()
    for o in offsets:
        covered.update(range(o, min(o + chip, size)))
    assert covered == set(range(size))
    if edge == "shift":
        assert offsets[-1] + chip == size, "last chip ends exactly at the edge"
        assert all(0 <= o <= size - chip for o in offsets)
    else:
        assert all(o % stride == 0 for o in offsets)
    if size >= chip:
        assert len(offsets) <= math.ceil((size - chip) / stride) + 1


def test_axis_offsets_formula_example():
    assert axis_offsets(1536, 256, 224) == [0, 224, 448, 672, 896, 1120, 1280]
    assert axis_offsets(1536, 256, 224, "pad") == [0, 224, 448, 672, 896, 1120, 1344]
    assert axis_offsets(512, 256, 256) == [0, 256]


@pytest.mark.parametrize(
    ("chip", "stride", "match"),
    [(0, 1, "positive"), (64, 65, "larger than chip_size"), (64, 0, "positive")],
)
def test_axis_offsets_rejects_bad_sizes(chip, stride, match):
    with pytest.raises(ChipSizeError, match=match):
        axis_offsets(100, chip, stride)


def test_chip_transform_is_window_transform_and_owned_windows_tile_scene():
    t = Affine(10, 0, 330000, 0, -10, 5822040)
    grid = ChipGrid(
        shape=(301, 257), transform=t, crs=CRS.from_epsg(32633), chip_size=(64, 64), stride=(48, 48)
    )
    seen = set()
    total = 0
    for chip in grid:
        assert chip.transform == window_transform(chip.window, t)
        assert chip.crs == grid.crs
        left, bottom, right, top = chip.bounds
        assert (left, top) == t @ (chip.col_off, chip.row_off)
        assert right - left == 640 and top - bottom == 640
        own = grid.owned_window(chip)
        total += own.height * own.width
        seen.add(chip.chip_id)
    assert total == 301 * 257
    assert len(seen) == len(grid)
