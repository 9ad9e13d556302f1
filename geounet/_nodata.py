"""The nodata rule: per-band nodata values, overrides, GDAL mask flags and value validity.

A pixel of a scene is valid only where every band is valid. A band is invalid where its value
equals its nodata (the file's, or an override, as ``gdalwarp -srcnodata`` replaces it), where
it is NaN (float bands), where its GDAL mask band is 0 (a ``.msk`` file, an internal COG mask,
an alpha band) and, for stacked band files, outside the file's footprint.
:class:`geounet.raster.SceneInfo` applies the rule; this module holds its pieces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from rasterio.enums import MaskFlags

from geounet._vrt import VRT_TYPES
from geounet.errors import BandMismatchError, InputFileError

NodataOverride = float | Sequence[float | None] | None
"""A nodata override: one value for every band, one per band (``None``: the file's), or none."""


def nodata_rule_from_json(value: Any) -> float | tuple[float | None, ...] | None:
    """A nodata override as JSON holds it (``tiling.json``, model file): number, list or null."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return tuple(None if v is None else float(v) for v in value)
    return float(value)


def valid_values(data: np.ndarray, nodatavals: Sequence[float | None]) -> np.ndarray:
    """``(height, width)`` bool: True where no band's value is its nodata or NaN.

    Args:
        data: ``(bands, height, width)`` values.
        nodatavals: Each band's nodata value, or ``None``.
    """
    invalid = np.zeros(data.shape[1:], dtype=bool)
    common = set(nodatavals)
    if len(common) == 1 and (nd := common.pop()) is not None and not np.isnan(nd):
        invalid |= (data == nd).any(axis=0)  # one pass over all bands: the usual case
    elif len(common) > 1:
        for band, nd in zip(data, nodatavals, strict=True):
            if nd is not None and not np.isnan(nd):
                invalid |= band == nd
    if np.issubdtype(data.dtype, np.floating):
        invalid |= np.isnan(data).any(axis=0)
    return ~invalid


def nodata_value(value: float | None, dtype: str) -> float | None:
    """A nodata value as the band's dtype holds it (NaN as the one ``math.nan``)."""
    if value is None:
        return None
    if np.isnan(value):
        return math.nan
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.floating):
        # GDAL keeps nodata as a double; float32 pixels hold it rounded (-3.4e38 and the like).
        return float(dt.type(value))
    return float(value)  # an integer band's value (or one no pixel can hold, matching none)


def resolve_nodata(
    files: Sequence[float | None], override: NodataOverride, source: str
) -> list[float | None]:
    """The per-band nodata: the files' values replaced by the override where one is given."""
    if override is None:
        return list(files)
    if isinstance(override, int | float):
        return [float(override)] * len(files)
    values = list(override)
    if len(values) != len(files):
        raise BandMismatchError(
            f"{len(values)} nodata values given ({values}) for {source} with {len(files)} "
            "bands; give one value for every band, or one per band (null keeps a band's own)."
        )
    return [f if v is None else float(v) for f, v in zip(files, values, strict=True)]


def has_mask_band(flags: Sequence[MaskFlags]) -> bool:
    """Whether GDAL's mask flags name a real mask (per-dataset, alpha, per-band ``.msk``)."""
    return MaskFlags.all_valid not in flags and MaskFlags.nodata not in flags


def stack_dtype(dtypes: Sequence[str], paths: Sequence[str]) -> str:
    """The smallest dtype that holds every band's values exactly (never wraps or clips)."""
    dtype = str(np.result_type(*dtypes))
    if dtype not in VRT_TYPES:
        raise InputFileError(
            f"band files {list(paths)} of dtypes {sorted(set(dtypes))} have no common dtype "
            f"that holds them all ({dtype}); convert them first, e.g. `gdal_translate -ot "
            "Float64`."
        )
    return dtype
