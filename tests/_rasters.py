"""Class rasters as ``geounet predict`` writes them, for tests that start from a prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geounet.classes import SCHEME_TAG, ClassScheme

UTM_GRID = Affine(10, 0, 330000.0, 0, -10, 5822040.0)


def write_class_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str = "EPSG:32633",
    transform: Affine = UTM_GRID,
    scheme: ClassScheme | None = None,
    nodata: int | None = 255,
    palette: bool = False,
) -> Path:
    """A uint8 class raster with the scheme in its GEOUNET_CLASSES tag (and its palette)."""
    scheme = scheme or ClassScheme.default()
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                   dtype="uint8", crs=crs, transform=transform, nodata=nodata)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        if palette:
            dst.write_colormap(1, scheme.colormap())
        dst.write(data, 1)
        dst.update_tags(**{SCHEME_TAG: json.dumps(scheme.to_dict())})
    return path
