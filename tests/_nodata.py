"""Band files of mixed dtypes, nodata values and masks, with their validity computed by hand.

The layout of an older archive delivered as single-band GeoTIFFs (Landsat 7 / GRASS / QGIS
exports) plus the Sentinel-2 cases, all on one 10 m UTM grid of ``SHAPE`` pixels:

=====  ========  ==========================================================================
band   dtype     what marks nodata
=====  ========  ==========================================================================
B01    float32   nodata -99999 (a 3-pixel left border and scattered pixels)
B02    int16     nodata -32768, and a smaller footprint (starts 8 rows down, ends 8 columns
                 early); negative values are data
B03    uint16    nodata 0, at 20 m (resampled to 10 m with nearest); values above 32767
B04    float32   no nodata declared, NaN pixels
B05    uint16    no nodata, an internal GDAL mask (GDAL_TIFF_INTERNAL_MASK) over a block
B06    uint8     no nodata, an external ``.msk`` mask file over another block
=====  ========  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

SHAPE = (64, 96)
ORIGIN = (330000.0, 5822040.0)
CRS = "EPSG:32633"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06")


@dataclass(frozen=True)
class MixedBands:
    """The band files and what a stacked scene of them must hold.

    Attributes:
        paths: The six band files, in band order.
        valid: ``SHAPE`` bool, the intersection of every band's validity, by hand.
        values: ``(6, *SHAPE)`` float64: each band's values on the 10 m grid (NaN where the
            file does not reach).
    """

    paths: list[str]
    valid: np.ndarray
    values: np.ndarray


def _write(path: Path, data: np.ndarray, res: float, *, nodata: float | None = None,
           offset: tuple[int, int] = (0, 0), mask: np.ndarray | None = None,
           internal_mask: bool = True) -> str:  # fmt: skip
    h, w = data.shape
    t = Affine(res, 0, ORIGIN[0] + offset[1] * 10, 0, -res, ORIGIN[1] - offset[0] * 10)
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype=data.dtype.name, crs=CRS,
                   transform=t, nodata=nodata)  # fmt: skip
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=internal_mask):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
            if mask is not None:
                dst.write_mask(mask)
    return str(path)


def write_mixed_bands(folder: Path) -> MixedBands:
    """Write the six band files of the module docstring into ``folder``."""
    rng = np.random.default_rng(16)
    h, w = SHAPE
    valid = np.ones(SHAPE, dtype=bool)
    values = np.full((6, h, w), np.nan)
    paths = []

    b1 = rng.uniform(0.0, 0.6, SHAPE).astype(np.float32)
    b1[:, :3] = -99999
    b1[rng.random(SHAPE) < 0.02] = -99999
    valid &= b1 != -99999
    values[0] = b1
    paths.append(_write(folder / "L7_B01.tif", b1, 10, nodata=-99999))

    b2 = rng.integers(-2000, 10000, (h - 8, w - 8)).astype(np.int16)
    b2[rng.random(b2.shape) < 0.02] = -32768
    footprint = np.zeros(SHAPE, dtype=bool)
    footprint[8:, : w - 8] = b2 != -32768
    valid &= footprint
    values[1, 8:, : w - 8] = b2
    paths.append(_write(folder / "L7_B02.tif", b2, 10, nodata=-32768, offset=(8, 0)))

    b3 = rng.integers(30000, 65536, (h // 2, w // 2)).astype(np.uint16)
    b3[rng.random(b3.shape) < 0.03] = 0
    valid &= np.repeat(np.repeat(b3 != 0, 2, axis=0), 2, axis=1)
    values[2] = np.repeat(np.repeat(b3, 2, axis=0), 2, axis=1)
    paths.append(_write(folder / "L7_B03.tif", b3, 20, nodata=0))

    b4 = rng.uniform(-1.0, 1.0, SHAPE).astype(np.float32)
    b4[rng.random(SHAPE) < 0.02] = np.nan
    valid &= ~np.isnan(b4)
    values[3] = b4
    paths.append(_write(folder / "L7_B04.tif", b4, 10))

    b5 = rng.integers(1, 5000, SHAPE).astype(np.uint16)
    m5 = np.full(SHAPE, 255, dtype=np.uint8)
    m5[40:56, 60:90] = 0
    valid &= m5 > 0
    values[4] = b5
    paths.append(_write(folder / "L7_B05.tif", b5, 10, mask=m5))

    b6 = rng.integers(1, 255, SHAPE).astype(np.uint8)
    m6 = np.full(SHAPE, 255, dtype=np.uint8)
    m6[20:30, 30:50] = 0
    valid &= m6 > 0
    values[5] = b6
    paths.append(_write(folder / "L7_B06.tif", b6, 10, mask=m6, internal_mask=False))
    return MixedBands(paths, valid, values)
