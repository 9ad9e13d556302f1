from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from geounet.errors import CRSError, GridMismatchError, InputFileError
from geounet.raster import band_name_from_path, open_scene, scene_name_from_paths
from geounet.sample_data import SENTINEL2_BANDS, brandenburg_s2


def _write(path, data, res, crs="EPSG:32633", origin=(330000.0, 5822040.0), nodata=None):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=Affine(res, 0, origin[0], 0, -res, origin[1]),
        nodata=nodata,
    ) as dst:
        dst.write(data, 1)
    return path


def test_stack_resamples_coarse_bands_onto_finest_grid_exactly(tmp_path):
    rng = np.random.default_rng(1)
    b10 = rng.integers(0, 5000, (60, 90), dtype=np.uint16)
    b20 = rng.integers(0, 5000, (30, 45), dtype=np.uint16)
    b60 = rng.integers(0, 5000, (10, 15), dtype=np.uint16)
    paths = [
        _write(tmp_path / "T33_B05.tif", b20, 20),
        _write(tmp_path / "T33_B02.tif", b10, 10),
        _write(tmp_path / "T33_B01.tif", b60, 60),
    ]
    scene = open_scene(paths)
    assert scene.bands == ("B05", "B02", "B01")
    assert scene.shape == (60, 90) and scene.res == (10.0, 10.0)
    assert scene.name == "T33"
    data = scene.read(Window(7, 5, 31, 23))
    np.testing.assert_array_equal(data[1], b10[5:28, 7:38])
    np.testing.assert_array_equal(data[0], np.repeat(np.repeat(b20, 2, 0), 2, 1)[5:28, 7:38])
    np.testing.assert_array_equal(data[2], np.repeat(np.repeat(b60, 6, 0), 6, 1)[5:28, 7:38])


def test_boundless_read_pads_with_nodata(tmp_path):
    data = np.arange(100, dtype=np.uint16).reshape(10, 10) + 1
    scene = open_scene(_write(tmp_path / "a.tif", data, 10, nodata=0))
    out = scene.read(Window(-2, 8, 5, 4), boundless=True)
    assert out.shape == (1, 4, 5)
    np.testing.assert_array_equal(out[0, :2, 2:], data[8:, :3])
    assert (out[0, 2:, :] == 0).all() and (out[0, :, :2] == 0).all()
    assert not scene.valid_mask(out)[3, 0]
    with pytest.raises(ValueError, match="boundless"):
        scene.read(Window(-2, 8, 5, 4))


def test_stack_rejects_mixed_crs_and_multiband(tmp_path):
    a = _write(tmp_path / "a_B02.tif", np.ones((10, 10), np.uint16), 10)
    b = _write(tmp_path / "b_B03.tif", np.ones((10, 10), np.uint16), 10, crs="EPSG:32632")
    with pytest.raises(GridMismatchError, match="share one CRS"):
        open_scene([a, b])
    with rasterio.open(
        tmp_path / "m.tif",
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=2,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(10, 0, 0, 0, -10, 0),
    ) as d:
        d.write(np.ones((2, 4, 4), "uint8"))
    with pytest.raises(InputFileError, match="single-band"):
        open_scene([a, tmp_path / "m.tif"])


def test_rotated_transform_is_refused(tmp_path):
    with rasterio.open(
        tmp_path / "r.tif",
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(10, 1, 0, 1, -10, 0),
    ) as d:
        d.write(np.ones((1, 4, 4), "uint8"))
    with pytest.raises(CRSError, match="rotated"):
        open_scene(tmp_path / "r.tif")


def test_band_and_scene_names():
    assert band_name_from_path("x/T33UUU_20170216T102101_B8A.jp2") == "B8A"
    assert band_name_from_path("red.tif") == "red"
    assert (
        scene_name_from_paths(["T33UUU_20170216T102101_B02.jp2", "T33UUU_20170216T102101_B03.jp2"])
        == "T33UUU_20170216T102101"
    )


def test_bundled_sample_opens_as_13_bands_at_10m():
    sample = brandenburg_s2()
    assert sample.licence.exists() and "MIT" in sample.licence.read_text()
    assert "Copernicus" in sample.readme.read_text()
    scene = open_scene(sample.band_paths)
    assert scene.bands == SENTINEL2_BANDS
    assert scene.shape == (768, 1536) and scene.res == (10.0, 10.0)
    assert scene.crs.to_epsg() == 32633
    assert scene.bounds == (330000.0, 5814360.0, 345360.0, 5822040.0)
    chip = scene.read(Window(512, 256, 64, 64))
    assert chip.shape == (13, 64, 64) and chip.dtype == np.uint16 and chip.min() > 0
