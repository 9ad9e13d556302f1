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


# --- Grid: the one description of a raster's pixels ------------------------------------------


def _grid():
    from geounet.grid import Grid

    return Grid((120, 200), Affine(10.0, 0, 330000.0, 0, -10.0, 5822040.0), CRS.from_epsg(32633))


@settings(max_examples=200, deadline=None)
@given(
    row=st.integers(-50, 150), col=st.integers(-50, 250), h=st.integers(1, 90), w=st.integers(1, 90)
)
def test_a_grid_sliced_by_a_window_is_the_window_s_grid(row, col, h, w):
    from rasterio.windows import Window

    grid = _grid()
    window = Window(col, row, w, h)
    sub = grid[window]
    assert sub.shape == (h, w) and sub.crs == grid.crs
    assert sub.transform == window_transform(window, grid.transform)
    # The window's pixel (0, 0) is the grid's pixel (row, col): same ground coordinates.
    assert sub.transform * (0, 0) == grid.transform * (col, row)
    assert sub.res == grid.res
    left, bottom, right, top = sub.bounds
    assert (right - left, top - bottom) == (w * 10.0, h * 10.0)


def test_grid_slices_matches_and_mismatch_message():
    from rasterio.windows import Window

    from geounet.errors import GridMismatchError
    from geounet.grid import Grid

    grid = _grid()
    assert grid[10:30, 5:25] == grid[Window(5, 10, 20, 20)]
    assert grid.matches(Grid.of(grid)) and grid.bounds == (330000.0, 5820840.0, 332000.0, 5822040.0)
    shifted = Grid(grid.shape, grid.transform * Affine.translation(1e-7, 0), grid.crs)
    assert not grid.matches(shifted) and grid.matches(shifted, tolerance=1e-5)
    with pytest.raises(GridMismatchError, match=r"a \(EPSG:32633, \(120, 200\).*b .*different"):
        grid.check_same(grid[0:10, 0:10], "a", "b")
    record = {"shape": [120, 200], "transform": list(grid.transform)[:6], "crs": grid.crs.to_wkt()}
    assert Grid.from_dict(record) == grid


def test_chip_grid_scene_and_chips_share_the_grid_value(tmp_path):
    from geounet.raster import open_scene
    from geounet.sample_data import make_synthetic_scene

    scene = open_scene(make_synthetic_scene(tmp_path / "s.tif", shape=(70, 90), count=2))
    chips = ChipGrid.from_scene(scene.grid, 32, 24)
    assert chips == ChipGrid.from_scene(scene, 32, 24) and chips.grid == scene.grid
    for chip in chips:
        assert chip.grid == scene.grid[chip.window]
        assert chip.bounds == chip.grid.bounds
