"""A tiny learnable chips folder for data, training and CLI tests (run from tests/ helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from shapely.geometry import box

from geounet.classes import ClassMap
from geounet.sample_data import class_map_path, make_synthetic_labels
from geounet.tiling import TilingOptions, tile_scene

BANDS = ("B02", "B03", "B04", "B08")
TRANSFORM = Affine(10.0, 0, 330000.0, 0, -10.0, 5822040.0)
# Axis-aligned regions (row0, row1, col0, col1) in pixels, their OSM fclass and spectrum.
REGIONS = [
    ((0, 48, 0, 60), "farm", (800, 900, 700, 3000)),
    ((0, 40, 60, 96), "water", (600, 500, 300, 200)),
    ((48, 96, 0, 50), "forest", (400, 500, 350, 2500)),
    ((56, 90, 56, 90), "residential", (1200, 1200, 1300, 1800)),
]


def make_scene_and_labels(tmp_path: Path, *, size: int = 96) -> tuple[Path, Path]:
    """A tiny learnable scene (4 bands, 4 classes with distinct spectra) and OSM-like polygons.

    Pixels outside the regions are unlabelled; a 6x6 nodata corner (value 0) tests masking.
    """
    rng = np.random.default_rng(0)
    image = np.full((4, size, size), 1000.0)
    polygons = []
    for (r0, r1, c0, c1), fclass, spectrum in REGIONS:
        image[:, r0:r1, c0:c1] = np.asarray(spectrum, dtype=float)[:, None, None]
        x0, y0 = TRANSFORM @ (c0, r0)
        x1, y1 = TRANSFORM @ (c1, r1)
        polygons.append((box(x0, y1, x1, y0), fclass))
    image += rng.normal(0, 150, image.shape)
    image = np.clip(image, 1, 10000).astype("uint16")
    image[:, size - 6 :, :6] = 0
    scene = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16",
                   crs="EPSG:32633", transform=TRANSFORM, nodata=0)  # fmt: skip
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(image)
        for i, name in enumerate(BANDS, start=1):
            dst.set_band_description(i, name)
    labels = make_synthetic_labels(tmp_path / "labels.gpkg", polygons, crs="EPSG:32633")
    return scene, labels


def make_chips(tmp_path: Path, *, size: int = 96, chip: int = 32) -> Path:
    """A tiny learnable chips folder of :func:`make_scene_and_labels` (label 255 off-region)."""
    scene, labels = make_scene_and_labels(tmp_path, size=size)
    out = tmp_path / "chips"
    options = TilingOptions(
        chip_size=chip, split_block_chips=1, split_fractions=(0.6, 0.2, 0.2), workers=1
    )
    class_map = ClassMap.from_yaml(class_map_path())
    tile_scene(scene, out, labels=labels, class_map=class_map, options=options)
    return out
