"""Opening scenes and reading / writing rasters: the only module that opens raster files.

A *scene* is either one multi-band raster (GeoTIFF, COG, VRT...) or a set of single-band files
(e.g. Sentinel-2 ``B02.jp2`` at 10 m, ``B05.jp2`` at 20 m, ``B01.jp2`` at 60 m) that are stacked
onto the grid of the finest one through an in-memory GDAL VRT, so that every later stage reads
one dataset window by window and nothing loads a whole scene.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geounet._bands import band_positions, parse_band_selection
from geounet._files import staged_file
from geounet._gdal_errors import gdal_write_errors, reading_errors
from geounet._nodata import (
    NodataOverride,
    has_mask_band,
    nodata_value,
    resolve_nodata,
    stack_dtype,
    valid_values,
)
from geounet._paths import gdal_path, local_exists, stem_of
from geounet._vrt import StackBand, stack_vrt_xml
from geounet.errors import CRSError, GridMismatchError, InputFileError
from geounet.grid import Grid

log = logging.getLogger(__name__)

ResamplingName = Literal["nearest", "bilinear", "cubic", "average"]

# GDAL's block cache must hold at least one row of blocks or windowed reads of a row of chips
# re-decode the same blocks (DESIGN.md: 256 MB cut RSS from 1.3 GB to 0.3 GB). rasterio passes an
# integer GDAL_CACHEMAX to GDALSetCacheMax64 as *bytes*: "256" meant 256 bytes and made every
# chip read of the JP2 sample 25x slower, so the value is spelled out in bytes.
GDAL_ENV: dict[str, Any] = {
    "GDAL_CACHEMAX": 256 * 1024**2,
    "GDAL_NUM_THREADS": "ALL_CPUS",
    # No directory listing on open, but sidecars are still probed by name: EMPTY_DIR hid a
    # band file's .msk mask (and .aux.xml nodata) from every read inside this environment.
    "GDAL_DISABLE_READDIR_ON_OPEN": "TRUE",
    # Masks of chips and probabilities go inside the GeoTIFF, not into a .msk file beside it.
    "GDAL_TIFF_INTERNAL_MASK": "YES",
}

_BAND_NAME = re.compile(r"(B\d{1,2}A?|SCL|AOT|WVP|TCI)$", re.IGNORECASE)


def band_name_from_path(path: str | Path) -> str:
    """Name a single-band file's band: Sentinel-2 style suffixes (``..._B8A.jp2`` -> ``B8A``).

    Falls back to the file stem when no band token is found.
    """
    stem = stem_of(path)
    token = stem.rsplit("_", 1)[-1]
    match = _BAND_NAME.search(token)
    return match.group(1).upper() if match else stem


def scene_name_from_paths(paths: Sequence[str | Path]) -> str:
    """A short scene name: the files' common stem once band suffixes (``_B02``) are removed."""
    stems = []
    for p in paths:
        stem = stem_of(p)
        head, _, token = stem.rpartition("_")
        stems.append(head if head and _BAND_NAME.fullmatch(token) else stem)
    prefix = os.path.commonprefix(stems).rstrip("_-. ")
    return prefix or "scene"


def _open(path: str | Path) -> rasterio.io.DatasetReader:
    """Open a raster or raise :class:`InputFileError` naming the file and the remedy."""
    p = gdal_path(path)
    if local_exists(p) is False:  # a /vsi... path or URL: GDAL says whether it exists
        raise InputFileError(f"scene file {p} does not exist; check the path.")
    try:
        return rasterio.open(p)
    except RasterioIOError as exc:
        raise InputFileError(
            f"cannot read {p} as a raster ({exc}); expected a GeoTIFF/COG/JP2/VRT that GDAL "
            "can open. Check the file is complete and is a raster; re-download or re-create it."
        ) from exc


def open_raster(
    path: str | Path, *, what: str = "", fix: str = "check the path"
) -> rasterio.io.DatasetReader:
    """Open a raster that a stage reads (a class raster, a label chip...), errors naming it.

    The raster layer's door for every module that is not a scene reader: the caller says
    what the file is and how to fix it, and gets :class:`InputFileError` naming the file.

    Args:
        path: A local raster file.
        what: What it is, for messages (``"probabilities file"``); empty: the path alone.
        fix: What to do when it is missing or unreadable.

    Returns:
        The open dataset (use it as a context manager).

    Raises:
        InputFileError: The file does not exist or GDAL cannot read it as a raster.
    """
    p = Path(path)
    name = f"{what} {p}" if what else str(p)
    if not p.is_file():
        raise InputFileError(f"{name} does not exist; {fix}.")
    try:
        return rasterio.open(p)
    except RasterioIOError as exc:
        raise InputFileError(f"{name} cannot be read as a raster ({exc}); {fix}.") from exc


def read_band(path: str | Path, index: int = 1) -> np.ndarray:
    """Read one whole band of a small raster (a label chip), as stored."""
    with open_raster(path, fix="re-run `geounet tile` to rewrite the chips folder") as src:
        return src.read(index)


def _check_georeferenced(ds: rasterio.io.DatasetReader, name: str) -> None:
    if ds.crs is None:
        raise CRSError(
            f"{name} has no CRS; geounet never guesses one. Assign the right one first, e.g. "
            f"`gdal_edit.py -a_srs EPSG:32633 {name}`."
        )
    t = ds.transform
    if t.b != 0 or t.d != 0:
        raise CRSError(
            f"{name} has a rotated geotransform {tuple(t)[:6]}; expected north-up. Warp it first: "
            f"`gdalwarp {name} north_up.tif`."
        )
    if t == Affine.identity():
        raise CRSError(f"{name} has no geotransform (pixel grid only); georeference it first.")


def read_raster_valid(path: str | Path) -> tuple[np.ndarray, np.ndarray, CRS, Affine]:
    """Read a whole (small) raster such as a chip: ``(data, valid, crs, transform)``.

    ``valid`` is ``(H, W)`` bool, False where any band is nodata, NaN or masked by its GDAL
    mask band (the internal mask tiling writes into chips of masked scenes).
    """
    with _open(path) as src:
        data = src.read()
        valid = valid_values(data, src.nodatavals)
        flags = src.mask_flag_enums
        for i in range(1, src.count + 1):
            if has_mask_band(flags[i - 1]):
                valid &= src.read_masks(i) > 0
                if MaskFlags.per_dataset in flags[i - 1]:
                    break  # one mask for every band
        return data, valid, src.crs, src.transform


@dataclass(frozen=True)
class SceneInfo:
    """What every stage needs to know about a scene, without holding it open.

    Attributes:
        source: What to pass to ``rasterio.open``: a path, or VRT XML for stacked band files.
        name: Short scene name used in chip ids.
        paths: The files the scene was opened from.
        bands: Band names, in band order.
        crs: The scene CRS.
        transform: The scene's affine transform (pixel -> CRS).
        shape: ``(height, width)`` in pixels.
        dtype: Numpy dtype name of the bands (for stacked files of several dtypes, the
            smallest one that holds every band's values exactly).
        nodatavals: Per band, the value that means nodata (the file's, or the override given
            to :func:`open_scene`), or ``None``. NaN is always nodata in float bands.
        masks: Per band, whether its GDAL mask band is read too (a ``.msk`` file, an internal
            COG mask, an alpha band, or a stacked band's footprint).
        indexes: 1-based band numbers of the data bands in :meth:`dataset` (an alpha band is
            a mask, not a band).
        keepalive: An object the scene's source needs alive (the in-memory file of a scene
            made from a DataArray); copied into every scene derived from this one, such as a
            band selection, so the file lives as long as any of them.
    """

    source: str
    name: str
    paths: tuple[str, ...]
    bands: tuple[str, ...]
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    dtype: str
    nodatavals: tuple[float | None, ...]
    masks: tuple[bool, ...]
    indexes: tuple[int, ...]
    keepalive: Any = field(default=None, repr=False, compare=False)
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.bands)

    @property
    def nodata(self) -> float | None:
        """The nodata value shared by every band, or ``None`` (none, or they differ)."""
        values = set(self.nodatavals)
        return values.pop() if len(values) == 1 else None

    @property
    def masked(self) -> bool:
        """Whether validity needs more than one nodata value (per-band values or masks)."""
        has_nodata = any(v is not None for v in self.nodatavals)
        return any(self.masks) or (self.nodata is None and has_nodata)

    @property
    def grid(self) -> Grid:
        """The scene's pixel grid (shape, transform, CRS) as one value."""
        return Grid(self.shape, self.transform, self.crs)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (both positive)."""
        return self.grid.res

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the scene CRS."""
        return self.grid.bounds

    def dataset(self) -> rasterio.io.DatasetReader:
        """This thread's open handle on the scene (GDAL handles are not thread-safe)."""
        ds = getattr(self._local, "ds", None)
        if ds is None or ds.closed:
            ds = _open(self.source)
            self._local.ds = ds
        return ds

    def read(self, window: Window, *, boundless: bool = False) -> np.ndarray:
        """Read all bands in ``window``: an array ``(bands, height, width)`` of the scene dtype.

        With ``boundless=True`` pixels outside the scene are filled with each band's nodata (0
        when unset).
        """
        height, width = int(window.height), int(window.width)
        row0, col0 = int(window.row_off), int(window.col_off)
        # Clip to the scene and paste into a nodata-filled array: cheaper than GDAL's boundless
        # read, which builds a warped VRT per call.
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + height, self.shape[0]), min(col0 + width, self.shape[1])
        if not boundless and (r0, c0, r1, c1) != (row0, col0, row0 + height, col0 + width):
            raise ValueError(f"window {window} extends past the scene {self.shape}; use boundless.")
        if self.nodata is not None or all(v is None for v in self.nodatavals):
            out = np.full((self.count, height, width), self.nodata or 0, dtype=self.dtype)
        else:
            fill = [0 if v is None else v for v in self.nodatavals]
            out = np.empty((self.count, height, width), dtype=self.dtype)
            out[...] = np.asarray(fill, dtype=self.dtype)[:, None, None]
        if r1 <= r0 or c1 <= c0:
            return out
        inner = Window(c0, r0, c1 - c0, r1 - r0)
        dest = out[:, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0]
        ds = self.dataset()
        with reading_errors(", ".join(self.paths), inner):
            if len(self.paths) > 1:
                # A stacked VRT reads far faster band by band: a multi-band read of sources of
                # different resolutions took 5 s per 256 px chip instead of 0.2 s (GDAL 3.10).
                for b, index in enumerate(self.indexes):
                    dest[b] = ds.read(index, window=inner)
            elif self.indexes != tuple(range(1, ds.count + 1)):  # an alpha band, a selection
                dest[...] = ds.read(list(self.indexes), window=inner)
            elif dest.shape == out.shape:
                ds.read(window=inner, out=out)  # straight into the result: no temporary + copy
            else:
                dest[...] = ds.read(window=inner)
        return out

    def valid_mask(self, data: np.ndarray, *, indexes: Sequence[int] | None = None) -> np.ndarray:
        """``(height, width)`` bool: True where every band's value is data (not nodata, not NaN).

        This judges values only; :meth:`read_valid` also applies the GDAL mask bands.

        Args:
            data: ``(bands, height, width)`` values of the scene's bands ``indexes``.
            indexes: 1-based scene band numbers of ``data``'s bands (default: all, in order).
        """
        picked = range(self.count) if indexes is None else [i - 1 for i in indexes]
        return valid_values(data, [self.nodatavals[i] for i in picked])

    def read_valid(
        self, window: Window, *, boundless: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read ``window`` and its valid mask; pixels past the scene edge are never valid.

        A pixel is valid only where every band is valid: its value is not the band's nodata
        nor NaN, and the band's GDAL mask (if :attr:`masks` says so) is non-zero.
        The edge rule matters when the scene declares no nodata: its padding (0) would
        otherwise pass for data.
        """
        data = self.read(window, boundless=boundless)
        valid = self.valid_mask(data)
        h, w = self.shape
        row0, col0 = int(window.row_off), int(window.col_off)
        if any(self.masks):
            r0, c0 = max(row0, 0), max(col0, 0)
            r1, c1 = min(row0 + data.shape[1], h), min(col0 + data.shape[2], w)
            if r1 > r0 and c1 > c0:
                inner = Window(c0, r0, c1 - c0, r1 - r0)
                dest = valid[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0]
                ds = self.dataset()
                flags = ds.mask_flag_enums
                for index, masked in zip(self.indexes, self.masks, strict=True):
                    if masked:
                        dest &= ds.read_masks(index, window=inner) > 0
                        if MaskFlags.per_dataset in flags[index - 1]:
                            break  # one mask (internal, .msk, alpha) for every band
        valid[max(h - row0, 0) :, :] = False
        valid[:, max(w - col0, 0) :] = False
        valid[: max(-row0, 0), :] = False
        valid[:, : max(-col0, 0)] = False
        return data, valid

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (CRS as WKT and EPSG code when it has one)."""
        return {
            "name": self.name,
            "paths": list(self.paths),
            "bands": list(self.bands),
            "crs": self.crs.to_wkt(),
            "epsg": self.crs.to_epsg(),
            "transform": list(self.transform)[:6],
            "shape": list(self.shape),
            "dtype": self.dtype,
            "nodata": self.nodata,
            "nodatavals": list(self.nodatavals),
            "masks": list(self.masks),
        }


def open_scene(
    paths: str | Path | Sequence[str | Path],
    *,
    bands: Sequence[str] | None = None,
    resampling: ResamplingName = "nearest",
    nodata: NodataOverride = None,
    select: Sequence[str] | None = None,
) -> SceneInfo:
    """Open a scene from one multi-band raster, several single-band files, a SAFE or a STAC item.

    Paths are strings as GDAL opens them: local files, ``/vsizip/``, ``/vsicurl/``,
    ``/vsis3/``... and URLs (``s3://b/k`` is read as ``/vsis3/b/k``, ``https://`` through
    ``/vsicurl/``); see :mod:`geounet._paths`. A Sentinel-2 SAFE product (``.SAFE`` folder or
    zip, L1C or L2A) or a STAC Item (JSON file or URL) is a scene of its band files, found by
    name (:mod:`geounet._safe`, :mod:`geounet._stac_scene`) and stacked as below.

    Several files are stacked in the given order onto the grid of the finest-resolution file
    (a GDAL VRT; coarser bands are resampled with ``resampling``, nearest by default so values
    stay the sensor's; masks are always resampled with nearest). All files must share one CRS
    and overlap the finest file's extent. Files of different dtypes are stacked in the
    smallest dtype that holds all their values exactly (uint16 + int16 -> int32, int16 +
    float32 -> float32, int32 + float32 -> float64), and each band keeps its own nodata.

    The nodata rule: a pixel is valid only where every band is valid. A band is invalid where
    its value equals its nodata (the file's, or ``nodata`` if given, as ``gdalwarp
    -srcnodata`` replaces it), where it is NaN, where its GDAL mask band (``.msk``, internal
    COG mask, alpha band) is 0, and, for stacked files, outside the file's footprint.

    Args:
        paths: One raster path, or several single-band raster paths (a list of one path is
            that raster: callers pass a scene's file list as it is).
        bands: Band names to use instead of the ones found (descriptions or file names).
        resampling: How coarser bands are brought to the finest grid.
        nodata: Override of the files' nodata: one value for every band, or one per band
            (``None`` keeps that band's own), e.g. ``0`` for Sentinel-2 files that do not
            declare theirs.
        select: For a SAFE or a STAC item, the bands to take, in order (``["B02", "B03"]``;
            for STAC also asset keys and common names such as ``red``); ``None``: every
            spectral band (SAFE: B01..B12 in the usual order; STAC: the item's band assets).

    Returns:
        The scene description; read it with :meth:`SceneInfo.read_valid`.

    Raises:
        InputFileError: A file is missing or unreadable, or a stacked file has several bands.
        CRSError: A file has no CRS or a rotated transform.
        GridMismatchError: Stacked files differ in CRS or do not overlap.
        BandMismatchError: ``nodata`` is a list whose length is not the number of bands.
    """
    from geounet._scene_inputs import expand_scene_input  # urllib, zipfile: only when used

    one = isinstance(paths, str | Path)
    path_list = [gdal_path(paths)] if one else [gdal_path(p) for p in paths]  # type: ignore[union-attr]
    if not path_list:
        raise InputFileError("no scene file given; pass a raster path or several band files.")
    expanded = expand_scene_input(path_list, select)
    if expanded is not None:
        path_list = [f for _, f in expanded.bands]
    if len(path_list) == 1:
        info = _open_single(path_list[0], nodata)
    else:
        info = _open_stack(path_list, resampling, nodata)
    if expanded is not None:
        names = tuple(b for b, _ in expanded.bands)
        info = SceneInfo(**{**_fields(info), "bands": names, "name": expanded.name})
    if bands is not None:
        if len(bands) != info.count:
            raise InputFileError(
                f"{len(bands)} band names given ({list(bands)}) for a scene of {info.count} bands "
                f"({', '.join(path_list)}); give one name per band."
            )
        info = SceneInfo(**{**_fields(info), "bands": tuple(bands)})
    return info


def select_bands(info: SceneInfo, bands: str | Sequence[str | int]) -> SceneInfo:
    """The scene reduced to ``bands`` (names or 1-based indexes), in that order.

    Nothing is read: the result reads only the selected bands of the same files.

    Args:
        info: An opened scene.
        bands: ``"B02,B03,B04,B08"``, ``"2,3,4,8"`` or a sequence of names / indexes.

    Raises:
        BandMismatchError: A band the scene lacks; the message names the scene's files, the
            missing bands and the available ones (before any pixel is read).
    """
    selection = parse_band_selection(bands) or ()
    positions = band_positions(info.bands, selection, ", ".join(info.paths))
    return take_bands(info, positions)


def take_bands(info: SceneInfo, positions: Sequence[int]) -> SceneInfo:
    """The scene with the bands at 0-based ``positions`` only, in that order."""
    if list(positions) == list(range(info.count)):
        return info
    pick = list(positions)
    return SceneInfo(
        **{
            **_fields(info),
            "bands": tuple(info.bands[i] for i in pick),
            "nodatavals": tuple(info.nodatavals[i] for i in pick),
            "masks": tuple(info.masks[i] for i in pick),
            "indexes": tuple(info.indexes[i] for i in pick),
        }
    )


def _fields(info: SceneInfo) -> dict[str, Any]:
    return {k: getattr(info, k) for k in info.__dataclass_fields__ if not k.startswith("_")}


def _data_indexes(ds: rasterio.io.DatasetReader) -> tuple[int, ...]:
    """1-based numbers of the bands that are not alpha (an alpha band is a mask, as in GDAL)."""
    data = tuple(i for i, ci in enumerate(ds.colorinterp, start=1) if ci != ColorInterp.alpha)
    return data or tuple(range(1, ds.count + 1))


def _open_single(path: str, override: NodataOverride) -> SceneInfo:
    with _open(path) as ds:
        _check_georeferenced(ds, path)
        indexes = _data_indexes(ds)
        dtypes = {ds.dtypes[i - 1] for i in indexes}
        if len(dtypes) > 1:
            raise InputFileError(f"{path} mixes band data types {dtypes}; expected one.")
        dtype = dtypes.pop()
        descriptions = [ds.descriptions[i - 1] for i in indexes]
        names = tuple(d if d else f"band_{i}" for i, d in zip(indexes, descriptions, strict=True))
        if len(names) == 1 and not descriptions[0]:
            names = (band_name_from_path(path),)
        files = [nodata_value(ds.nodatavals[i - 1], dtype) for i in indexes]
        nodatavals = [nodata_value(v, dtype) for v in resolve_nodata(files, override, path)]
        return SceneInfo(
            source=path,
            name=scene_name_from_paths([path]),
            paths=(path,),
            bands=names,
            crs=ds.crs,
            transform=ds.transform,
            shape=(ds.height, ds.width),
            dtype=dtype,
            nodatavals=tuple(nodatavals),
            masks=tuple(has_mask_band(ds.mask_flag_enums[i - 1]) for i in indexes),
            indexes=indexes,
        )


def _open_stack(
    paths: list[str], resampling: ResamplingName, override: NodataOverride
) -> SceneInfo:
    metas = []
    for p in paths:
        with _open(p) as ds:
            _check_georeferenced(ds, p)
            indexes = _data_indexes(ds)
            if len(indexes) != 1:
                raise InputFileError(
                    f"{p} has {ds.count} bands; stacking expects single-band files. Pass a "
                    "multi-band raster on its own instead."
                )
            i = indexes[0]
            nd = nodata_value(ds.nodatavals[i - 1], ds.dtypes[i - 1])
            mask = has_mask_band(ds.mask_flag_enums[i - 1])
            metas.append((p, ds.crs, ds.transform, ds.width, ds.height, ds.dtypes[i - 1], nd, mask))
    crs0 = metas[0][1]
    for p, crs, *_ in metas[1:]:
        if crs != crs0:
            raise GridMismatchError(
                f"{p} is in {crs.to_string()} but {metas[0][0]} is in {crs0.to_string()}; "
                "stacked band files must share one CRS (warp them with gdalwarp first)."
            )
    dtype = stack_dtype([m[5] for m in metas], paths)
    # The finest band defines the grid; first one wins among equals so the order is stable.
    finest = min(metas, key=lambda m: abs(m[2].a * m[2].e))
    _, _, grid_t, grid_w, grid_h, _, _, _ = finest
    nodatavals = resolve_nodata([m[6] for m in metas], override, ", ".join(paths))
    bands = []
    smooth, res = resampling != "nearest", (grid_t.a, grid_t.e)
    for (p, _, t, w, h, src_dtype, _, mask), nd in zip(metas, nodatavals, strict=True):
        # Where this file's pixel grid lands on the target grid, in (fractional) target pixels.
        col0, row0 = ~grid_t @ (t.c, t.f)
        col1, row1 = ~grid_t @ (t.c + t.a * w, t.f + t.e * h)
        if col1 <= 0 or row1 <= 0 or col0 >= grid_w or row0 >= grid_h:
            raise GridMismatchError(f"{p} does not overlap {finest[0]}; they are not one scene.")
        partial = col0 > 0 or row0 > 0 or col1 < grid_w or row1 < grid_h
        bands.append(
            StackBand(
                path=p, name=band_name_from_path(p), size=(w, h),
                dst=(col0, row0, col1 - col0, row1 - row0),
                nodata=nodata_value(nd, src_dtype),
                # Without a nodata value GDAL fills the uncovered part with 0, which may be data:
                # the footprint then comes from the file's (all-valid) mask band, read cheaply.
                # A bilinear/cubic kernel fills nodata next to data, so a resampled band's
                # validity also comes from its mask, resampled with nearest like its pixels.
                mask=mask or (partial and nd is None) or (smooth and (t.a, t.e) != res),
            )
        )  # fmt: skip
    xml = stack_vrt_xml(
        bands, crs=crs0, transform=grid_t, shape=(grid_h, grid_w), dtype=dtype,
        resampling=resampling,
    )  # fmt: skip
    return SceneInfo(
        source=xml,
        name=scene_name_from_paths(paths),
        paths=tuple(paths),
        bands=tuple(b.name for b in bands),
        crs=crs0,
        transform=grid_t,
        shape=(grid_h, grid_w),
        dtype=dtype,
        nodatavals=tuple(nodata_value(b.nodata, dtype) for b in bands),
        masks=tuple(b.mask for b in bands),
        indexes=tuple(range(1, len(bands) + 1)),
    )


def read_resampled(
    path: str | Path,
    *,
    crs: CRS,
    transform: Affine,
    shape: tuple[int, int],
    resampling: ResamplingName = "nearest",
) -> tuple[np.ndarray, np.ndarray]:
    """Read band 1 of ``path`` warped onto a target grid (e.g. a class raster onto a chip).

    Returns:
        ``(values, covered)``: a ``shape`` array of the file's dtype, and a bool array that is
        False where the file does not cover the target (its footprint comes from a warped
        alpha band: without one, uncovered pixels would read as 0, a valid class id).
    """
    from rasterio.vrt import WarpedVRT

    with _open(path) as src:
        if src.crs is None:
            raise CRSError(f"{path} has no CRS; assign one (gdal_edit.py -a_srs EPSG:XXXX).")
        with (
            WarpedVRT(
                src,
                crs=crs,
                transform=transform,
                width=shape[1],
                height=shape[0],
                resampling=Resampling[resampling],
                add_alpha=True,
            ) as vrt,
            reading_errors(str(path)),
        ):
            return vrt.read(1), vrt.read(vrt.count) > 0


def check_same_grid(a: SceneInfo, b: SceneInfo) -> None:
    """Raise :class:`GridMismatchError` unless two scenes share CRS, transform and shape."""
    a.grid.check_same(b.grid, a.name, b.name)


ChipCodec = Literal["zstd", "deflate", "lzw", "none"]


def write_chip(
    path: str | Path,
    data: np.ndarray,
    *,
    crs: CRS,
    transform: Affine,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    compress: ChipCodec = "zstd",
    tags: dict[str, str] | None = None,
) -> None:
    """Write a chip ``(bands, height, width)`` as a tiled, losslessly compressed GeoTIFF.

    The horizontal-differencing predictor is used for integer data (it roughly halves uint16
    reflectance chips under ZSTD/DEFLATE); the codec is lossless either way. A masked array
    (``np.ma``) also writes its validity as the chip's internal GDAL mask (a pixel is valid
    only where no band is masked): for scenes whose nodata one value cannot say.
    """
    valid = None
    if isinstance(data, np.ma.MaskedArray):
        valid = ~np.ma.getmaskarray(data).any(axis=0)
        data = data.data
    count, height, width = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    if height % 16 == 0 and width % 16 == 0:
        profile.update(tiled=True, blockxsize=min(width, 256), blockysize=min(height, 256))
    if count > 1:
        # Band-sequential like the array: GDAL skips the pixel-interleaving copy (measured -20 %
        # write CPU for a 13-band uint16 chip, same size; reading a chip back is no slower).
        profile["interleave"] = "band"
    if compress != "none":
        profile["compress"] = compress
        if np.issubdtype(data.dtype, np.integer):
            profile["predictor"] = 2
        if compress == "zstd":
            profile["zstd_level"] = 1  # level 1 is ~3x faster than 9 for ~5 % more bytes
    if colormap is not None:
        profile["photometric"] = "palette"
    with (
        gdal_write_errors(path, needed_bytes=data.nbytes),
        rasterio.open(path, "w", **profile) as dst,
    ):
        # The colour table must be set before the pixels: TIFF tags are frozen once data is written.
        if colormap is not None:
            dst.write_colormap(1, colormap)
        if band_names is not None:
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
        dst.write(data)
        if valid is not None:
            dst.write_mask(valid)
        if tags:
            dst.update_tags(**tags)


def open_block_writer(
    path: str | Path,
    *,
    like: SceneInfo,
    count: int,
    dtype: str,
    nodata: float | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
) -> BlockWriter:
    """Open a tiled GeoTIFF on a scene's grid (same CRS and transform) for windowed writes.

    This is the working file that prediction fills strip by strip; :func:`write_cog` turns it
    into the delivered Cloud-Optimized GeoTIFF.
    """
    height, width = like.shape
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype,
        "crs": like.crs, "transform": like.transform, "nodata": nodata, "tiled": True,
        "blockxsize": 512, "blockysize": 512, "compress": "zstd", "zstd_level": 1,
        "bigtiff": "if_safer",
    }  # fmt: skip
    if colormap is not None:
        profile["photometric"] = "palette"
    elif count > 1:
        # Otherwise GDAL calls 3/4 uint8 bands RGB(A) and QGIS takes a class band for alpha.
        profile["photometric"] = "minisblack"
    needed = height * width * count * np.dtype(dtype).itemsize  # uncompressed: an upper bound
    writer = BlockWriter(path, needed)
    with writer.errors():
        writer.dataset = rasterio.open(path, "w", **profile)
        if colormap is not None:
            writer.dataset.write_colormap(1, colormap)
    return writer


class BlockWriter:
    """A GeoTIFF open for windowed writes whose every GDAL error raises a geounet error.

    Failed writes, and GDAL errors that rasterio only logs, become :class:`OutputError` (or
    :class:`DiskFullError`) naming the file; see :func:`open_block_writer`.
    """

    def __init__(self, path: str | Path, needed_bytes: int) -> None:
        self.path, self.needed_bytes = Path(path), needed_bytes
        self.dataset: rasterio.io.DatasetWriter | None = None

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Translate what a block of GDAL calls on this file raises or logs as an error."""
        with gdal_write_errors(self.path, needed_bytes=self.needed_bytes):
            yield

    def _ds(self) -> rasterio.io.DatasetWriter:
        if self.dataset is None or self.dataset.closed:
            raise ValueError(f"{self.path} is not open for writing.")
        return self.dataset

    def write(self, data: np.ndarray, indexes: int | None = None, *, window: Window) -> None:
        """Write ``data`` (``(bands, h, w)``, or ``(h, w)`` with ``indexes``) into ``window``."""
        with self.errors():
            self._ds().write(data, indexes, window=window)

    def write_mask(self, mask: np.ndarray, *, window: Window) -> None:
        """Write the dataset mask (``(h, w)``, nonzero = valid) into ``window``."""
        with self.errors():
            self._ds().write_mask(mask, window=window)

    def update_tags(self, **tags: str) -> None:
        """Set dataset metadata tags."""
        with self.errors():
            self._ds().update_tags(**tags)

    def set_band_description(self, index: int, text: str) -> None:
        """Name band ``index`` (1-based)."""
        with self.errors():
            self._ds().set_band_description(index, text)

    def close(self) -> None:
        """Flush and close; a flush that fails (a full disk) raises."""
        if self.dataset is not None and not self.dataset.closed:
            with self.errors():
                self.dataset.close()


CogResampling = Literal["mode", "average", "nearest"]


def write_cog(src_path: str | Path, dst_path: str | Path, *, resampling: CogResampling) -> None:
    """Copy a GeoTIFF to a Cloud-Optimized GeoTIFF with overviews, atomically.

    Overviews use ``resampling`` (``mode`` for classes: a zoomed-out class map shows the
    majority class, never an average of class ids). The COG is written to a temporary name,
    re-opened and checked (:func:`check_raster`), and only then renamed, so ``dst_path`` is
    either absent or complete. A GDAL error during the copy raises, even one GDAL only logs
    (a full disk during the COG copy is logged, and the copy "succeeds" with a broken file).

    Raises:
        DiskFullError: The disk filled; the message says how much was free and needed.
        OutputError: Any other GDAL error while writing.
    """
    from rasterio.shutil import copy as rio_copy

    dst = Path(dst_path)
    # Overviews add a third at most, and DEFLATE is no larger than the working file's ZSTD.
    needed = Path(src_path).stat().st_size * 4 // 3
    with staged_file(dst) as tmp, gdal_write_errors(dst, needed_bytes=needed):
        with rasterio.Env(**GDAL_ENV):
            rio_copy(
                str(src_path), str(tmp), driver="COG", compress="deflate", predictor="yes",
                blocksize=512, overview_resampling=resampling.upper(), overviews="auto",
                bigtiff="if_safer", num_threads="all_cpus",
            )  # fmt: skip
        check_raster(tmp)


def check_raster(path: str | Path) -> None:
    """Re-open a written raster and read its last block and its smallest overview.

    A cheap validity check before a file is published: a truncated file (a full disk, a
    killed copy) fails here, because its last block is where a tiled GeoTIFF ends.

    Raises:
        RasterReadError: The file cannot be opened or those pixels cannot be read.
    """
    name = str(path)
    with reading_errors(name), rasterio.open(name) as ds:
        bh, bw = ds.block_shapes[0]
        last = Window(
            (ds.width - 1) // bw * bw, (ds.height - 1) // bh * bh,
            min(bw, ds.width - (ds.width - 1) // bw * bw),
            min(bh, ds.height - (ds.height - 1) // bh * bh),
        )  # fmt: skip
        ds.read(window=last)
        factors = ds.overviews(1)
        if factors:
            f = factors[-1]
            ds.read(out_shape=(ds.count, max(1, ds.height // f), max(1, ds.width // f)))
