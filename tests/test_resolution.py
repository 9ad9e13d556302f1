"""Predict refuses scenes whose pixels are far from the model's training pixels (in metres)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from _models import BANDS, make_model_file
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS

from geounet._resolution import pixel_size_m
from geounet.classes import ClassScheme
from geounet.cli.main import cli
from geounet.errors import ResolutionMismatchError
from geounet.inference import ModelSpec, predict_scene
from geounet.sample_data import make_synthetic_scene


def _scene(path, transform, crs="EPSG:32633"):
    scene = make_synthetic_scene(
        path, shape=(40, 48), count=4, crs=crs, transform=transform, fill="random"
    )
    with rasterio.open(scene, "r+") as ds:
        ds.descriptions = BANDS
    return scene


def _spec(crs="EPSG:32633"):
    return ModelSpec(
        bands=BANDS, mean=np.full(4, 3000, np.float32), std=np.full(4, 2000, np.float32),
        scheme=ClassScheme.default(), chip_size=32, res=(10.0, 10.0), crs=crs,
    )  # fmt: skip


def test_metres_per_pixel_of_projected_and_geographic_crs():
    assert pixel_size_m(CRS.from_epsg(32633), (10, 10)) == (10.0, 10.0)
    feet = pixel_size_m(CRS.from_epsg(2263), (10, 10))  # NY state plane, US survey feet
    assert feet[0] == pytest.approx(3.048, abs=1e-3)
    # One degree: 111.3 km of longitude at the equator, half of it at 60 degrees north;
    # a degree of latitude is 110.6 km at the equator and 111.4 km at 60 degrees.
    equator = pixel_size_m(CRS.from_epsg(4326), (1, 1), (0, -1, 1, 1))
    assert equator == pytest.approx((111319, 110574), abs=5)
    north = pixel_size_m(CRS.from_epsg(4326), (1, 1), (10, 59, 11, 61))
    assert north == pytest.approx((55800, 111412), rel=1e-3)


def test_a_60_m_scene_is_refused_for_a_10_m_model_unless_allowed(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=32)
    scene = _scene(tmp_path / "s60.tif", Affine(60, 0, 330000, 0, -60, 5822040))
    with pytest.raises(ResolutionMismatchError) as err:
        predict_scene(str(model), scene, tmp_path / "out", device="cpu")
    message = str(err.value)
    assert "60 x 60 m" in message and "10 x 10 m" in message and "6.0x coarser" in message
    assert "gdalwarp -tr 10 10" in message and "--allow-resolution-mismatch" in message
    assert not (tmp_path / "out").exists()  # refused before any output
    result = predict_scene(
        str(model), scene, tmp_path / "out", device="cpu", allow_resolution_mismatch=True
    )
    assert result.classes.is_file()
    # 14 m (1.4x) passes without the flag; 16 m (1.6x) does not.
    predict_scene(str(model), _scene(tmp_path / "s14.tif", Affine(14, 0, 0, 0, -14, 0)),
                  tmp_path / "o14", device="cpu")  # fmt: skip
    with pytest.raises(ResolutionMismatchError, match="1.6x coarser"):
        predict_scene(str(model), _scene(tmp_path / "s16.tif", Affine(16, 0, 0, 0, -16, 0)),
                      tmp_path / "o16", device="cpu")  # fmt: skip
    with pytest.raises(ResolutionMismatchError, match="finer"):
        predict_scene(str(model), _scene(tmp_path / "s2.tif", Affine(2, 0, 0, 0, -2, 0)),
                      tmp_path / "o2", device="cpu")  # fmt: skip


def test_a_geographic_scene_is_compared_in_metres_at_its_centre(tmp_path):
    _, net = make_model_file(tmp_path, chip_size=32)
    # At 52.5 N a 0.00015 x 0.00009 degree pixel is about 10.2 x 10.0 m: accepted as it is.
    near = Affine(0.00015, 0, 13.0, 0, -0.00009, 52.5)
    result = predict_scene(
        net, _scene(tmp_path / "near.tif", near, "EPSG:4326"), tmp_path / "o1",
        metadata=_spec(), device="cpu",
    )  # fmt: skip
    with rasterio.open(result.classes) as ds:
        assert ds.crs == CRS.from_epsg(4326)
    # 0.0005 degrees is about 34 x 56 m there: refused, with the way to reproject it.
    coarse = Affine(0.0005, 0, 13.0, 0, -0.0005, 52.5)
    with pytest.raises(ResolutionMismatchError) as err:
        predict_scene(net, _scene(tmp_path / "coarse.tif", coarse, "EPSG:4326"), tmp_path / "o2",
                      metadata=_spec(), device="cpu")  # fmt: skip
    message = str(err.value)
    assert "degrees of EPSG:4326" in message and "34 x 55.6 m" in message
    assert "gdalwarp -t_srs EPSG:32633 -tr 10 10" in message


def test_cli_predict_flag_allows_a_mismatch(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=32)
    scene = _scene(tmp_path / "s60.tif", Affine(60, 0, 330000, 0, -60, 5822040))
    args = ["predict", str(model), str(scene), "--out", str(tmp_path / "p"), "--device", "cpu"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "6.0x coarser" in refused.output
    assert "Traceback" not in refused.output
    allowed = CliRunner().invoke(cli, [*args, "--allow-resolution-mismatch"])
    assert allowed.exit_code == 0, allowed.output
    assert (tmp_path / "p" / "classes.tif").is_file()
