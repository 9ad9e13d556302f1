"""predict_scene's outputs equal those of the earlier, simpler pipeline, pixel for pixel.

The reference below is how prediction worked before the reader read strips of rows once and
the valid mask stopped being blended as one more channel: every chip window read on its own
(``read_valid``, boundless), normalised, run through the model, blended by a
:class:`BlendMerger` with the valid mask as the last channel, argmax and uint8 quantisation on
each merged strip. The fast path must give the same class map and probabilities.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geounet import engines
from geounet.classes import ClassScheme
from geounet.grid import ChipGrid
from geounet.inference import ModelSpec, PredictOptions, predict_scene
from geounet.raster import open_scene
from geounet.sample_data import SENTINEL2_BANDS, brandenburg_s2, make_synthetic_scene
from geounet.stitching import BlendMerger, to_uint8_probabilities


def _model(cin: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(cin, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 3, padding=1),
    ).eval()


def _spec(bands, chip: int, mean: float, std: float) -> ModelSpec:
    n = len(bands)
    return ModelSpec(
        tuple(bands),
        np.full(n, mean, np.float32),
        np.full(n, std, np.float32),
        ClassScheme.default(),
        chip,
    )


def reference_predict(
    model, scene, spec: ModelSpec, chip: int, overlap: int, blend: str, batch_size: int = 4
):
    """The earlier pipeline, chip window by chip window: ``(classes, uint8 probabilities)``."""
    info = open_scene(scene)
    h, w = info.shape
    k = spec.scheme.num_classes
    grid = ChipGrid.from_scene(info, chip, chip - overlap, "pad" if min(h, w) < chip else "shift")
    merger = BlendMerger((h, w), k + 1, grid.chip_size, blend=blend, overlap=overlap)
    classes = np.zeros((h, w), np.uint8)
    probs8 = np.zeros((k, h, w), np.uint8)

    def write(strip):
        rows = slice(int(strip.window.row_off), int(strip.window.row_off + strip.window.height))
        probs, valid = strip.values[:-1], strip.values[-1] >= 0.5
        valid &= ~np.isnan(probs).any(axis=0)
        c = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=0).astype(np.uint8)
        c[~valid] = spec.scheme.ignore_index
        p8 = to_uint8_probabilities(np.nan_to_num(probs, nan=0.0))
        p8[:, ~valid] = 0
        classes[rows], probs8[:, rows] = c, p8

    chips = list(grid)
    with torch.inference_mode():
        # Batched like predict: a conv's float results can depend on the batch it runs in.
        for start in range(0, len(chips), batch_size):
            batch, xs, valids = chips[start : start + batch_size], [], []
            for c in batch:
                data, valid = info.read_valid(c.window, boundless=True)
                x = data.astype(np.float32)
                x -= spec.mean[:, None, None]
                x /= spec.std[:, None, None]
                x[:, ~valid] = 0.0
                xs.append(x)
                valids.append(valid)
            probs = torch.softmax(model(torch.from_numpy(np.stack(xs))), 1).numpy()
            for c, p, valid in zip(batch, probs, valids, strict=True):
                stacked = np.concatenate([p, valid[None].astype(np.float32)])
                ch, cw = min(c.shape[0], h - c.row_off), min(c.shape[1], w - c.col_off)
                window = Window(c.col_off, c.row_off, cw, ch)
                for strip in merger.add(stacked[:, :ch, :cw], window):
                    write(strip)
    for strip in merger.finalize():
        write(strip)
    return classes, probs8


def _outputs(result):
    with rasterio.open(result.classes) as c, rasterio.open(result.probabilities) as p:
        return c.read(1), p.read()


@pytest.fixture
def plain_layout(monkeypatch):
    """The CPU forward in the default memory layout, as the reference runs it."""
    monkeypatch.setattr(engines, "_CHANNELS_LAST_DEVICES", {"cuda"})


def _synthetic(tmp_path, shape, nodata=None):
    path = make_synthetic_scene(tmp_path / "scene.tif", shape=shape, fill="random", nodata=nodata)
    if nodata is not None:  # holes of nodata across chip borders
        with rasterio.open(path, "r+") as ds:
            data = ds.read()
            data[:, 20:45, 30:90] = nodata
            data[1, 100:104, :] = nodata
            ds.write(data)
    return path


@pytest.mark.parametrize(
    ("shape", "chip", "overlap", "blend", "nodata"),
    [
        ((150, 201), 64, 16, "gaussian", 0),  # shifted edge chips, nodata holes
        ((150, 201), 48, 13, "cosine", None),
        ((40, 90), 64, 16, "crop", 0),  # scene smaller than a chip: padded chips
        ((300, 70), 32, 0, "gaussian", None),  # no overlap, many rows of chips
    ],
)
def test_synthetic_scene_equals_reference(
    tmp_path, plain_layout, shape, chip, overlap, blend, nodata
):
    path = _synthetic(tmp_path, shape, nodata)
    spec = _spec([f"band_{i}" for i in range(1, 5)], chip, 30000.0, 20000.0)
    model = _model(4)
    options = PredictOptions(
        chip_size=chip, overlap=overlap, blend=blend, probabilities=True, batch_size=3
    )
    result = predict_scene(model, path, tmp_path / "out", metadata=spec, options=options)
    classes, probs = _outputs(result)
    ref_classes, ref_probs = reference_predict(model, path, spec, chip, overlap, blend, 3)
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(probs, ref_probs)
    if nodata is not None:
        assert (classes == 255).any()


@pytest.mark.parametrize("readers", [1, 3])
def test_bundled_sample_equals_reference(tmp_path, plain_layout, readers):
    """13 JP2 bands of three resolutions stacked in a VRT: strips read like chip windows."""
    bands = brandenburg_s2().band_paths
    spec = _spec(SENTINEL2_BANDS, 128, 1500.0, 700.0)
    model = _model(13)
    options = PredictOptions(
        chip_size=128, overlap=32, probabilities=True, batch_size=4, readers=readers
    )
    result = predict_scene(model, list(bands), tmp_path / "out", metadata=spec, options=options)
    classes, probs = _outputs(result)
    ref_classes, ref_probs = reference_predict(model, list(bands), spec, 128, 32, "gaussian")
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(probs, ref_probs)


def test_channels_last_keeps_the_class_map_of_the_bundled_sample(tmp_path):
    """The default CPU layout (channels_last) changes floats in the last bits at most."""
    bands = brandenburg_s2().band_paths
    spec = _spec(SENTINEL2_BANDS, 128, 1500.0, 700.0)
    model = _model(13)
    options = PredictOptions(chip_size=128, overlap=32, probabilities=True, device="cpu")
    result = predict_scene(model, list(bands), tmp_path / "out", metadata=spec, options=options)
    classes, probs = _outputs(result)
    ref_classes, ref_probs = reference_predict(model, list(bands), spec, 128, 32, "gaussian")
    np.testing.assert_array_equal(classes, ref_classes)
    assert np.abs(probs.astype(int) - ref_probs).max() <= 1
