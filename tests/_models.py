"""A tiny model file (4 bands, 4 classes) for prediction tests."""

from __future__ import annotations

from pathlib import Path

import torch

from geounet.classes import ClassScheme
from geounet.data import Normalization
from geounet.modelfile import ModelMetadata, save_model_file
from geounet.models import create_model, describe_model

BANDS = ("B02", "B03", "B04", "B08")


def make_model_file(tmp_path: Path, *, chip_size: int = 64) -> tuple[Path, torch.nn.Module]:
    """A seeded 2-level U-Net saved as ``tmp_path/model.safetensors``, and the module itself."""
    torch.manual_seed(0)
    model = create_model("unet", in_channels=4, num_classes=4, depth=2, base_channels=4).eval()
    meta = ModelMetadata(
        architecture=describe_model(model), bands=BANDS,
        normalization=Normalization((3000.0,) * 4, (2000.0,) * 4), classes=ClassScheme.default(),
        chip_size=chip_size, res=(10.0, 10.0),
    )  # fmt: skip
    return save_model_file(tmp_path / "model.safetensors", model, meta), model


SAMPLE_INDEXES = (1, 2, 3, 7)
"""Positions of B02, B03, B04, B08 in the bundled sample's band files (``brandenburg_s2()``)."""


def sample_band_paths() -> list[Path]:
    """The bundled Sentinel-2 sample's B02, B03, B04 and B08 files (the :data:`BANDS` order)."""
    from geounet.sample_data import brandenburg_s2

    paths = brandenburg_s2().band_paths
    return [paths[i] for i in SAMPLE_INDEXES]


def make_sample_model_file(tmp_path: Path, *, chip_size: int = 128, steps: int = 30) -> Path:
    """A tiny U-Net fitted for a few seconds to NDVI classes of the bundled sample.

    A seeded random U-Net gives one class everywhere on real data, which would make any
    engine comparison trivial; a few Adam steps on quartiles of NDVI give a model whose classes
    follow the scene (fields, forest, water, towns), with argmax ties as rare as in real models.
    """
    import numpy as np
    from rasterio.windows import Window

    from geounet.raster import open_scene

    info = open_scene(sample_band_paths())
    raw = info.read(Window(0, 0, 128, 128)).astype(np.float32)
    mean, std = raw.reshape(4, -1).mean(1), raw.reshape(4, -1).std(1)
    ndvi = (raw[3] - raw[2]) / (raw[3] + raw[2] + 1e-6)
    target = np.digitize(ndvi, np.quantile(ndvi, [0.25, 0.5, 0.75])).astype(np.int64)
    x = torch.from_numpy((raw - mean[:, None, None]) / std[:, None, None])[None]
    y = torch.from_numpy(target)[None]
    torch.manual_seed(0)
    model = create_model("unet", in_channels=4, num_classes=4, depth=2, base_channels=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    meta = ModelMetadata(
        architecture=describe_model(model), bands=BANDS,
        normalization=Normalization(tuple(map(float, mean)), tuple(map(float, std))),
        classes=ClassScheme.default(), chip_size=chip_size, res=(10.0, 10.0),
    )  # fmt: skip
    return save_model_file(tmp_path / "model.safetensors", model.eval(), meta)


def write_sample_crop(
    path: Path,
    *,
    rows: tuple[int, int] = (256, 512),
    cols: tuple[int, int] = (512, 896),
    nodata_rows: int = 0,
) -> Path:
    """A 4-band GeoTIFF crop of the bundled sample (bands named B02..B08, exact transform).

    ``nodata_rows``: the crop declares nodata 0 and its top rows are set to it.
    """
    import rasterio
    from rasterio.windows import Window

    from geounet.raster import open_scene

    info = open_scene(sample_band_paths())
    window = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
    data = info.read(window)
    if nodata_rows:
        data[:, :nodata_rows] = 0
    profile = {
        "driver": "GTiff", "width": window.width, "height": window.height, "count": 4,
        "dtype": data.dtype.name, "crs": info.crs, "transform": rasterio.windows.transform(window, info.transform),
        "nodata": 0 if nodata_rows else None, "tiled": True, "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = BANDS
    return path
