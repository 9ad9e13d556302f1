"""xarray in and out: predict a georeferenced DataArray, open a prediction as DataArrays.

Uses rioxarray's ``rio`` accessor for the grid, as rioxarray users expect: a scene is a
``(band, y, x)`` (or ``(y, x)``) DataArray with ``da.rio.crs`` and ``da.rio.transform()``; its
band names come from a ``band`` coordinate of strings (``["B02", "B03", ...]``), else from the
``long_name`` attribute :func:`rioxarray.open_rasterio` sets from the band descriptions.

Example:
    >>> import rioxarray, geounet
    >>> da = rioxarray.open_rasterio("scene.tif")              # doctest: +SKIP
    >>> geounet.predict_scene("model.safetensors", da, "pred")  # doctest: +SKIP
    >>> pred = geounet.open_prediction("pred")                  # doctest: +SKIP
    >>> pred.probabilities.sel({"class": "water"}).plot()       # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geounet.errors import CRSError, InputFileError

if TYPE_CHECKING:
    import xarray as xr

    from geounet.raster import NodataOverride, SceneInfo

__all__ = ["open_prediction", "scene_from_data_array"]


def _band_names(da: xr.DataArray, count: int) -> tuple[str, ...]:
    values = (
        [v.item() for v in np.atleast_1d(da.coords["band"].values)] if "band" in da.coords else []
    )
    if values and all(isinstance(v, str) for v in values):
        return tuple(values)
    long_name = da.attrs.get("long_name")
    if isinstance(long_name, str):
        long_name = (long_name,)
    if isinstance(long_name, Sequence) and all(long_name):
        # rioxarray numbers bands 1..N and keeps long_name whole when bands are selected
        # (da.isel(band=[3, 0])): the numbers say which names are left, and in what order.
        if values and all(isinstance(v, int) and 1 <= v <= len(long_name) for v in values):
            return tuple(str(long_name[v - 1]) for v in values)
        if len(long_name) == count:
            return tuple(str(v) for v in long_name)
    return tuple(f"band_{i}" for i in range(1, count + 1))


def scene_from_data_array(
    da: xr.DataArray, *, nodata: NodataOverride = None, name: str | None = None
) -> SceneInfo:
    """A scene (:class:`~geounet.raster.SceneInfo`) holding a georeferenced DataArray's pixels.

    The pixels are written once into an in-memory GeoTIFF (GDAL ``/vsimem/``, freed with the
    returned scene), which every stage then reads window by window like a file. A dask-backed
    array is computed here: for scenes larger than memory, write a COG and pass its path.

    Args:
        da: ``(band, y, x)`` or ``(y, x)`` values with a CRS (``da.rio.write_crs(...)``).
        nodata: Override of the nodata (default: ``da.rio.nodata``; NaN is always nodata).
        name: The scene's name (default: ``da.name``, else ``"dataarray"``).

    Raises:
        CRSError: The array has no CRS, or no north-up grid.
        InputFileError: Its dimensions are not ``(band, y, x)`` / ``(y, x)``.
    """
    import rioxarray  # noqa: F401 - registers the .rio accessor
    from rasterio.io import MemoryFile

    from geounet.raster import open_scene

    if da.ndim == 2:
        da = da.expand_dims("band")
    if da.ndim != 3:
        raise InputFileError(
            f"DataArray {da.name!r} has dims {da.dims}; expected (band, y, x) or (y, x), e.g. "
            "from rioxarray.open_rasterio()."
        )
    x_dim, y_dim = da.rio.x_dim, da.rio.y_dim
    band_dim = next(d for d in da.dims if d not in (x_dim, y_dim))
    da = da.transpose(band_dim, y_dim, x_dim)
    if da.rio.crs is None:
        raise CRSError(
            f"DataArray {da.name!r} has no CRS; geounet never guesses one. Set it first: "
            "da = da.rio.write_crs('EPSG:32633')."
        )
    data = np.asarray(da.values)
    if data.dtype == bool:
        data = data.astype("uint8")
    count, height, width = data.shape
    declared = da.rio.nodata if da.rio.nodata is not None else da.rio.encoded_nodata
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count,
        "dtype": data.dtype.name, "crs": da.rio.crs, "transform": da.rio.transform(),
        "nodata": None if declared is None or np.isnan(declared) else declared,
        "interleave": "band",
    }  # fmt: skip
    if height >= 256 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    memfile = MemoryFile(ext=".tif")
    with memfile.open(**profile) as dst:
        dst.write(data)
        for i, band in enumerate(_band_names(da, count), start=1):
            dst.set_band_description(i, band)
    info = open_scene(memfile.name, nodata=nodata)
    scene_name = name or (str(da.name) if da.name is not None else "dataarray")
    from geounet.raster import SceneInfo

    fields = {k: getattr(info, k) for k in info.__dataclass_fields__ if not k.startswith("_")}
    # The in-memory file lives as long as any scene that reads it (band selections included).
    return SceneInfo(**{**fields, "name": scene_name, "keepalive": _MemoryFileOwner(memfile)})


class _MemoryFileOwner:
    """Closes an in-memory file when the last scene reading it is gone."""

    def __init__(self, memfile: Any) -> None:
        self.memfile = memfile

    def __del__(self) -> None:
        self.memfile.close()


def open_prediction(out_dir: str | Path) -> xr.Dataset:
    """A prediction folder as an :class:`xarray.Dataset` (lazy, via rioxarray).

    Variables:
        ``classes``: ``(y, x)`` uint8 class ids, 255 where nothing was predicted
        (``_FillValue``); attributes ``class_names``, ``class_ids``, ``class_colors``
        (``#RRGGBB``) and ``class_scheme`` (the JSON of the model's scheme).
        ``probabilities`` (when ``probabilities.tif`` was written): ``(class, y, x)`` float32
        in [0, 1] (the file's uint8 times its scale 1/255), NaN where nothing was predicted,
        the ``class`` coordinate holding the class names (``.sel({"class": "water"})``).

    The CRS is ``ds.rio.crs`` (and the ``spatial_ref`` coordinate); the grid is the scene's.

    Raises:
        InputFileError: No ``classes.tif`` in ``out_dir``.
    """
    import rioxarray
    import xarray as xr

    from geounet.raster import open_raster
    from geounet.vectorize import read_class_scheme

    out = Path(out_dir)
    classes_path = out / "classes.tif"
    if not classes_path.is_file():
        raise InputFileError(
            f"{out} has no classes.tif; expected the output folder of `geounet predict`."
        )
    with open_raster(classes_path, what="class raster") as src:
        scheme = read_class_scheme(src.tags(), str(classes_path))
    classes = rioxarray.open_rasterio(classes_path, mask_and_scale=False, lock=False)
    classes = classes.squeeze("band", drop=True).rename("classes")  # type: ignore[union-attr]
    classes.attrs.update(
        class_names=list(scheme.names),
        class_ids=[c.id for c in scheme.classes],
        class_colors=[c.hex for c in scheme.classes],
        class_scheme=json.dumps(scheme.to_dict()),
        _FillValue=scheme.ignore_index,
    )
    variables = {"classes": classes}
    probs_path = out / "probabilities.tif"
    if probs_path.is_file():
        probs = rioxarray.open_rasterio(probs_path, mask_and_scale=False, lock=False)
        with open_raster(probs_path, what="probabilities raster") as src:
            scales, offsets = src.scales, src.offsets
        scale = np.asarray(scales, np.float32)[:, None, None]
        offset = np.asarray(offsets, np.float32)[:, None, None]
        values = probs.astype(np.float32) * scale + offset  # type: ignore[union-attr]
        values = values.where(classes != scheme.ignore_index)
        values = values.rename({"band": "class"}).assign_coords({"class": list(scheme.names)})
        values.attrs = {"long_name": "class probability", "units": "1"}
        variables["probabilities"] = values.rename("probabilities")
    ds = xr.Dataset(variables)
    return ds.rio.write_crs(classes.rio.crs)
