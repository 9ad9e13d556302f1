"""Nodata survives every path into a scene: stacks of band files with per-band nodata, masks,
NaN and mixed dtypes drive chips, statistics, training, predictions and polygons pixel for pixel.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from _nodata import BANDS, SHAPE, MixedBands, write_mixed_bands
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window

from geounet.classes import ClassScheme
from geounet.data import ChipDataset, read_chip, read_chips_info
from geounet.errors import BandMismatchError
from geounet.inference import predict_scene
from geounet.modelfile import ModelMetadata, read_model_metadata, save_model_file
from geounet.models import create_model, describe_model
from geounet.raster import open_scene
from geounet.tiling import TilingOptions, read_index, tile_scene
from geounet.training import OptimizerOptions, TrainingOptions, fit
from geounet.vectorize import LAYER_NAME, vectorize_raster

GRID = Affine(10, 0, 330000.0, 0, -10, 5822040.0)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> MixedBands:
    return write_mixed_bands(tmp_path_factory.mktemp("mixed"))


def _labels(path: Path) -> Path:
    """A class raster on the scene grid: classes 0-3 in vertical stripes, no nodata."""
    cols = np.arange(SHAPE[1])[None, :].repeat(SHAPE[0], axis=0)
    data = ((cols // 24) % 4).astype(np.uint8)
    profile = dict(driver="GTiff", width=SHAPE[1], height=SHAPE[0], count=1, dtype="uint8",
                   crs="EPSG:32633", transform=GRID)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture(scope="module")
def chips(mixed: MixedBands, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("chips")
    options = TilingOptions(chip_size=32, max_nodata_fraction=1.0, split_block_chips=1,
                            split_fractions=(0.5, 0.5, 0.0), workers=2)  # fmt: skip
    tile_scene(mixed.paths, tmp / "chips", labels=_labels(tmp / "labels.tif"), options=options)
    return tmp / "chips"


def test_stacked_validity_is_the_intersection_and_values_are_exact(mixed):
    scene = open_scene(mixed.paths)
    assert scene.bands == BANDS and scene.shape == SHAPE
    # float32 holds uint16, int16 and uint8 exactly; each band keeps its own nodata.
    assert scene.dtype == "float32"
    assert scene.nodatavals[:3] == (-99999.0, -32768.0, 0.0) and scene.nodata is None
    assert scene.masks == (False, False, False, False, True, True)
    data, valid = scene.read_valid(Window(0, 0, SHAPE[1], SHAPE[0]))
    np.testing.assert_array_equal(valid, mixed.valid)
    assert 0 < valid.sum() < valid.size
    covered = ~np.isnan(mixed.values)
    np.testing.assert_array_equal(data.astype(np.float64)[covered], mixed.values[covered])
    # Chip-sized reads (with pixels past the edge) agree with the whole read.
    for row, col in ((0, 0), (20, 70), (48, 80)):
        part, part_valid = scene.read_valid(Window(col, row, 32, 32), boundless=True)
        h, w = min(32, SHAPE[0] - row), min(32, SHAPE[1] - col)
        np.testing.assert_array_equal(part_valid[:h, :w], mixed.valid[row : row + h, col : col + w])
        assert not part_valid[h:].any() and not part_valid[:, w:].any()
        np.testing.assert_array_equal(part[:, :h, :w], data[:, row : row + h, col : col + w])


def _band_file(path: Path, data: np.ndarray, nodata: float | None = None) -> str:
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                   dtype=data.dtype.name, crs="EPSG:32633", transform=GRID, nodata=nodata)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return str(path)


def test_uint16_and_int16_stack_as_int32_without_wrapping(tmp_path):
    u = np.array([[65535, 40000], [0, 7]], dtype=np.uint16)
    i = np.array([[-32767, -5], [12, -32768]], dtype=np.int16)
    paths = [
        _band_file(tmp_path / "a_B01.tif", u, 0),
        _band_file(tmp_path / "a_B02.tif", i, -32768),
    ]
    scene = open_scene(paths)
    assert scene.dtype == "int32" and scene.nodatavals == (0.0, -32768.0)
    data, valid = scene.read_valid(Window(0, 0, 2, 2))
    np.testing.assert_array_equal(data, np.stack([u, i]).astype(np.int32))
    np.testing.assert_array_equal(valid, [[True, True], [False, False]])
    with scene.dataset() as vrt:  # the VRT itself says each band's nodata, as gdalbuildvrt does
        assert vrt.nodatavals == (0.0, -32768.0)


def test_nodata_override_per_scene_and_per_band(tmp_path):
    # Sentinel-2 style: 0 is nodata but the files do not say so.
    a = np.array([[0, 5], [6, 7]], dtype=np.uint16)
    b = np.array([[1, 0], [9, 9]], dtype=np.uint16)
    paths = [_band_file(tmp_path / "s_B02.tif", a), _band_file(tmp_path / "s_B03.tif", b)]
    whole = Window(0, 0, 2, 2)
    assert open_scene(paths).read_valid(whole)[1].all()
    np.testing.assert_array_equal(
        open_scene(paths, nodata=0).read_valid(whole)[1], [[False, False], [True, True]]
    )
    np.testing.assert_array_equal(
        open_scene(paths, nodata=[0, None]).read_valid(whole)[1], [[False, True], [True, True]]
    )
    single = _band_file(tmp_path / "one.tif", a, nodata=7)  # the override replaces 7
    np.testing.assert_array_equal(
        open_scene(single, nodata=5).read_valid(whole)[1], [[True, False], [True, True]]
    )
    with pytest.raises(BandMismatchError, match="3 nodata values"):
        open_scene(paths, nodata=[0, 0, 0])


def test_alpha_band_is_a_mask_not_a_band(tmp_path):
    rgb = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4) + 1
    alpha = np.full((4, 4), 255, dtype=np.uint8)
    alpha[1, 2] = alpha[3, 0] = 0
    profile = dict(driver="GTiff", width=4, height=4, count=4, dtype="uint8", crs="EPSG:32633",
                   transform=GRID, photometric="rgb", alpha="yes")  # fmt: skip
    with rasterio.open(tmp_path / "rgba.tif", "w", **profile) as dst:
        dst.write(np.concatenate([rgb, alpha[None]]))
    scene = open_scene(tmp_path / "rgba.tif")
    assert scene.count == 3 and scene.indexes == (1, 2, 3)
    data, valid = scene.read_valid(Window(0, 0, 4, 4))
    np.testing.assert_array_equal(data, rgb)
    np.testing.assert_array_equal(valid, alpha > 0)


def test_chips_labels_and_stats_follow_the_validity(mixed, chips):
    index = read_index(chips)
    assert len(index) == 6
    for rec in index.itertuples():
        rows = slice(rec.row_off, rec.row_off + rec.height)
        cols = slice(rec.col_off, rec.col_off + rec.width)
        expected = mixed.valid[rows, cols]
        data, valid, _, _ = read_chip(chips / rec.image)  # the chip's own mask says it
        np.testing.assert_array_equal(valid, expected)
        covered = ~np.isnan(mixed.values[:, rows, cols])
        np.testing.assert_array_equal(data.astype(np.float64)[covered],
                                      mixed.values[:, rows, cols][covered])  # fmt: skip
        assert rec.nodata_fraction == pytest.approx(1 - expected.mean(), abs=1e-6)
        with rasterio.open(chips / rec.label) as lab:
            label = lab.read(1)
        np.testing.assert_array_equal(label == 255, ~expected)
    stats = json.loads((chips / "stats.json").read_text())
    for b, name in enumerate(BANDS):
        values = mixed.values[b][mixed.valid]
        band = stats["per_band"][name]
        assert band["valid_pixels"] == mixed.valid.sum()
        assert (band["min"], band["max"]) == (values.min(), values.max())
        assert band["mean"] == pytest.approx(values.mean(), rel=1e-9)
    tiling = json.loads((chips / "tiling.json").read_text())
    assert tiling["scene"]["nodatavals"][:3] == [-99999.0, -32768.0, 0.0]
    assert tiling["scene"]["masks"] == [False, False, False, False, True, True]


def test_training_ignores_nodata_pixels(mixed, chips, tmp_path):
    for split in ("train", "val"):
        for sample in ChipDataset(chips, split):
            invalid = sample["mask"] == 255
            assert invalid.any() and torch.isfinite(sample["image"]).all()
            assert (sample["image"][:, invalid] == 0).all()  # 0 = the band mean
    options = TrainingOptions(model_options={"depth": 2, "base_channels": 4}, epochs=1,
                              batch_size=2, progress_bar=False, val_samples=1, patience=None,
                              optimizer=OptimizerOptions(lr=0.01, warmup_fraction=0.0))  # fmt: skip
    result = fit(chips, tmp_path / "run", options=options)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # The metrics count exactly the valid pixels of the val chips.
    val = read_index(chips).query("split == 'val'")
    expected = sum(int(mixed.valid[r : r + 32, c : c + 32].sum())
                   for r, c in zip(val.row_off, val.col_off, strict=True))  # fmt: skip
    assert metrics["val_metrics"]["pixels"] == expected > 0
    # -99999 or NaN leaking into the loss would make it huge or NaN.
    # Empty cells are steps that logged another value; a NaN loss is written out as "nan".
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv", keep_default_na=False,
                      na_values=[""])  # fmt: skip
    losses = np.concatenate(
        [log[c].dropna().astype(float) for c in ("train_loss_step", "val_loss")]
    )
    assert len(losses) >= 2 and np.isfinite(losses).all() and losses.max() < 10
    assert read_model_metadata(result.model_path).nodata is None


def _model_file(path: Path, chips: Path, nodata: float | None = None) -> Path:
    info = read_chips_info(chips)
    torch.manual_seed(0)
    model = create_model("unet", in_channels=6, num_classes=4, depth=2, base_channels=4).eval()
    meta = ModelMetadata(architecture=describe_model(model), bands=info.bands,
                         normalization=info.normalization, classes=ClassScheme.default(),
                         chip_size=32, res=(10.0, 10.0), nodata=nodata)  # fmt: skip
    return save_model_file(path, model, meta)


def test_classes_probabilities_and_polygons_respect_the_validity(mixed, chips, tmp_path):
    model = _model_file(tmp_path / "model.safetensors", chips)
    result = predict_scene(model, mixed.paths, tmp_path / "pred", probabilities=True,
                           device="cpu", chip_size=32, overlap=8)  # fmt: skip
    with rasterio.open(result.classes) as src:
        classes = src.read(1)
        assert src.nodata == 255
    np.testing.assert_array_equal(classes == 255, ~mixed.valid)
    with rasterio.open(result.probabilities) as src:
        probs, mask = src.read(), src.dataset_mask()
    np.testing.assert_array_equal(mask > 0, mixed.valid)
    assert (probs[:, ~mixed.valid] == 0).all() and (probs.sum(axis=0)[mixed.valid] > 0).all()
    gpkg = vectorize_raster(result.classes, tmp_path / "polygons.gpkg", block_size=48)
    import geopandas as gpd

    polygons = gpd.read_file(gpkg, layer=LAYER_NAME)
    burnt = rasterize(((g, int(c) + 1) for g, c in zip(polygons.geometry, polygons.class_id,
                                                       strict=True)),
                      out_shape=SHAPE, transform=GRID, fill=0, dtype="uint8")  # fmt: skip
    # Polygons cover every valid pixel with its class and no invalid pixel at all.
    np.testing.assert_array_equal(burnt == 0, ~mixed.valid)
    np.testing.assert_array_equal(burnt[mixed.valid] - 1, classes[mixed.valid])
    union = polygons.geometry.union_all()
    assert union.area == pytest.approx(mixed.valid.sum() * 100.0)


def test_the_nodata_rule_travels_from_tiling_to_predict(tmp_path):
    # Files that do not declare their nodata 0: tiled with the override, the model keeps it.
    rng = np.random.default_rng(3)
    bands = []
    for name in BANDS:
        values = rng.integers(1, 3000, SHAPE).astype(np.uint16)
        values[:, :5] = 0
        bands.append(_band_file(tmp_path / f"s2_{name}.tif", values))
    valid = np.ones(SHAPE, dtype=bool)
    valid[:, :5] = False
    options = TilingOptions(chip_size=32, max_nodata_fraction=1.0, nodata=0, workers=1)
    tile_scene(bands, tmp_path / "chips", labels=_labels(tmp_path / "labels.tif"), options=options)
    tiling = json.loads((tmp_path / "chips" / "tiling.json").read_text())
    assert tiling["options"]["nodata"] == 0 and tiling["scene"]["nodatavals"] == [0.0] * 6
    info = read_chips_info(tmp_path / "chips")
    assert info.nodata == 0.0
    model = _model_file(tmp_path / "model.safetensors", tmp_path / "chips", nodata=info.nodata)
    assert read_model_metadata(model).nodata == 0.0
    result = predict_scene(model, bands, tmp_path / "pred", device="cpu", chip_size=32)
    with rasterio.open(result.classes) as src:
        np.testing.assert_array_equal(src.read(1) == 255, ~valid)
    # An explicit override wins over the model's rule (here: nothing is nodata).
    again = predict_scene(model, bands, tmp_path / "pred2", device="cpu", chip_size=32,
                          nodata=[None] * 6)  # fmt: skip
    with rasterio.open(again.classes) as src:
        assert (src.read(1) != 255).all()


def test_footprint_of_a_band_without_nodata_is_masked_with_nearest(tmp_path):
    # A 20 m band with no nodata that covers only part of the 10 m grid: its 0s are data, the
    # ground it does not reach is not, and its 20 m pixels land on 2 x 2 blocks of the grid.
    full = np.arange(1, 8 * 12 + 1, dtype=np.uint16).reshape(8, 12)
    coarse = np.array([[0, 5, 6], [7, 0, 9]], dtype=np.uint16)
    t20 = Affine(20, 0, GRID.c + 40, 0, -20, GRID.f - 20)  # from row 2, col 4 of the 10 m grid
    with rasterio.open(tmp_path / "c_B05.tif", "w", driver="GTiff", width=3, height=2, count=1,
                       dtype="uint16", crs="EPSG:32633", transform=t20) as dst:  # fmt: skip
        dst.write(coarse, 1)
    scene = open_scene([_band_file(tmp_path / "c_B02.tif", full), str(tmp_path / "c_B05.tif")])
    assert scene.masks == (False, True) and scene.nodatavals == (None, None)
    data, valid = scene.read_valid(Window(0, 0, 12, 8))
    expected = np.zeros((8, 12), dtype=bool)
    expected[2:6, 4:10] = True
    np.testing.assert_array_equal(valid, expected)
    np.testing.assert_array_equal(data[1, 2:6, 4:10], np.kron(coarse, np.ones((2, 2), np.uint16)))
    np.testing.assert_array_equal(data[0], full)


def test_single_file_with_nodata_and_an_internal_mask_uses_both(tmp_path):
    data = np.arange(1, 2 * 6 * 6 + 1, dtype=np.int16).reshape(2, 6, 6)
    data[1, 0, 0] = -1
    mask = np.full((6, 6), 255, dtype=np.uint8)
    mask[4:, 4:] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(tmp_path / "m.tif", "w", driver="GTiff", width=6, height=6, count=2,
                           dtype="int16", crs="EPSG:32633", transform=GRID,
                           nodata=-1) as dst:  # fmt: skip
            dst.write(data)
            dst.write_mask(mask)
    scene = open_scene(tmp_path / "m.tif")
    assert scene.masks == (True, True) and scene.nodata == -1
    expected = mask > 0
    expected[0, 0] = False  # the mask wins over nodata in GDAL; geounet takes both
    np.testing.assert_array_equal(scene.read_valid(Window(0, 0, 6, 6))[1], expected)
    np.testing.assert_array_equal(read_chip(tmp_path / "m.tif")[1], expected)


def test_chips_keep_a_nodata_0_that_only_some_bands_have(tmp_path):
    a = np.array([[0, 5, 6, 7]] * 4, dtype=np.uint16)
    paths = [_band_file(tmp_path / "z_B02.tif", a, nodata=0), _band_file(tmp_path / "z_B03.tif", a)]
    scene = open_scene(paths)
    assert scene.nodatavals == (0.0, None) and scene.masked
    tile_scene(paths, tmp_path / "chips", options=TilingOptions(chip_size=4, workers=1))
    data, valid, _, _ = read_chip(tmp_path / "chips" / "images" / "z_r000000_c000000.tif")
    np.testing.assert_array_equal(valid, a != 0)
    np.testing.assert_array_equal(data, np.stack([a, a]))


def test_bilinear_bands_keep_the_nearest_mask(mixed):
    # Bilinear fills a 20 m nodata pixel's 10 m neighbours from valid pixels; the validity
    # stays the nearest-resampled one, so bilinear and nearest stacks agree on it.
    nearest = open_scene(mixed.paths)
    smooth = open_scene(mixed.paths, resampling="bilinear")
    assert smooth.masks[2] and not nearest.masks[2]
    whole = Window(0, 0, SHAPE[1], SHAPE[0])
    np.testing.assert_array_equal(smooth.read_valid(whole)[1], mixed.valid)
