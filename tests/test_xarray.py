"""xarray in and out: a georeferenced DataArray predicted like its file, a prediction opened as
DataArrays with CRS, class names and probabilities in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rioxarray
import torch
from _models import BANDS

import geounet
from geounet.classes import ClassScheme
from geounet.errors import BandMismatchError, CRSError
from geounet.inference import ModelSpec
from geounet.sample_data import make_synthetic_scene
from geounet.xarray import scene_from_data_array

SPEC = ModelSpec(BANDS, np.full(4, 100.0, np.float32), np.full(4, 50.0, np.float32),
                 ClassScheme.default(), 48)  # fmt: skip


def _model():
    torch.manual_seed(0)
    return torch.nn.Conv2d(4, 4, 1)


@pytest.fixture
def scene(tmp_path):
    path = make_synthetic_scene(tmp_path / "scene.tif", shape=(90, 121), count=4, fill="random",
                                crs="EPSG:32633", nodata=0)  # fmt: skip
    with rasterio.open(path, "r+") as ds:
        ds.descriptions = BANDS
    return path


def test_data_array_predicts_like_its_file_with_band_names_from_the_band_coordinate(
    scene, tmp_path
):
    from_file = geounet.predict_scene(_model(), str(scene), tmp_path / "file", metadata=SPEC,
                                      probabilities=True)  # fmt: skip
    da = rioxarray.open_rasterio(scene)  # band coordinate 1..4, names in long_name
    assert tuple(da.attrs["long_name"]) == BANDS
    named = da.assign_coords(band=list(BANDS))  # the other usual form: names as coordinates
    named.attrs.pop("long_name")
    for i, array in enumerate((da, named)):
        out = geounet.predict_scene(_model(), array, tmp_path / f"da{i}", metadata=SPEC,
                                    probabilities=True)  # fmt: skip
        for a, b in (
            (from_file.classes, out.classes),
            (from_file.probabilities, out.probabilities),
        ):
            with rasterio.open(a) as x, rasterio.open(b) as y:
                assert x.crs == y.crs and x.transform == y.transform
                np.testing.assert_array_equal(x.read(), y.read())
    info = scene_from_data_array(named.isel(band=[2, 0]), name="two")
    assert info.bands == ("B04", "B02") and info.name == "two" and info.nodata == 0


def test_data_array_without_crs_or_with_other_bands_is_refused_before_compute(scene, tmp_path):
    da = rioxarray.open_rasterio(scene)
    with pytest.raises(CRSError, match=r"no CRS.*rio.write_crs"):
        scene_from_data_array(da.drop_vars("spatial_ref"))
    with pytest.raises(BandMismatchError, match="B08"):
        geounet.predict_scene(_model(), da.isel(band=[0, 1, 2]), tmp_path / "x", metadata=SPEC)
    assert not (tmp_path / "x" / "classes.tif").exists()


def test_a_data_array_with_reordered_bands_is_read_by_band_name(scene, tmp_path):
    da = rioxarray.open_rasterio(scene)
    a = geounet.predict_scene(_model(), da, tmp_path / "a", metadata=SPEC)
    b = geounet.predict_scene(_model(), da.isel(band=[0, 1, 3, 2]), tmp_path / "b", metadata=SPEC)
    with rasterio.open(a.classes) as ca, rasterio.open(b.classes) as cb:
        np.testing.assert_array_equal(ca.read(), cb.read())


def test_open_prediction_gives_georeferenced_classes_and_probabilities(scene, tmp_path):
    result = geounet.predict_scene(_model(), str(scene), tmp_path / "pred", metadata=SPEC,
                                   probabilities=True)  # fmt: skip
    ds = geounet.open_prediction(tmp_path / "pred")
    with rasterio.open(result.classes) as c, rasterio.open(result.probabilities) as p:
        classes, probs, valid = c.read(1), p.read(), p.dataset_mask() > 0
        assert ds.rio.crs == c.crs and ds.rio.transform() == c.transform
    assert (classes == 255).any() and valid.any()  # the scene's nodata 0 gives unpredicted pixels
    np.testing.assert_array_equal(ds.classes.values, classes)
    assert ds.classes.attrs["class_names"] == ["other", "field", "water", "building"]
    assert ds.classes.attrs["class_colors"][0].startswith("#")
    assert list(ds.probabilities["class"].values) == ["other", "field", "water", "building"]
    water = ds.probabilities.sel({"class": "water"}).values
    np.testing.assert_allclose(water[valid], probs[2][valid] / 255, rtol=1e-6)
    assert np.isnan(water[~valid]).all()
    np.testing.assert_allclose(ds.probabilities.sum("class").values[valid], 1, atol=4 / 255)
