"""A STAC Item describing a job's outputs, so catalogues and QGIS's STAC browser find them.

:func:`write_stac_item` writes one `STAC 1.0.0 Item <https://github.com/radiantearth/stac-spec>`_
(a GeoJSON Feature) for a predicted scene:

* ``geometry`` and ``bbox`` are the class raster's footprint in EPSG:4326 (longitude, latitude),
  its edges densified before reprojection so that the curved image of a UTM rectangle is
  followed, and ``bbox`` is computed with the same densification.
* ``properties`` hold ``datetime`` (given, else the class raster's modification time, UTC),
  ``created`` (now) and the `projection extension`_ v2.0.0 fields of the class raster's grid:
  ``proj:code`` (``"EPSG:32633"``; ``None`` plus ``proj:wkt2`` for a CRS without an EPSG code),
  ``proj:shape`` ``[height, width]``, ``proj:transform`` (the 6 affine coefficients
  ``a b c d e f``) and ``proj:bbox`` ``[left, bottom, right, top]`` in that CRS. Raster assets
  repeat their own grid's fields.
* Assets, with hrefs relative to the item file: ``classes`` (COG; `classification extension`_
  v2.0.0 ``classification:classes`` with ``value``, ``name``, ``title`` and ``color_hint`` as 6
  upper-case hex digits; `raster extension`_ v1.1.0 ``raster:bands`` uint8 with nodata 255),
  ``probabilities`` (COG, one uint8 band per class, ``scale`` 1/255), ``polygons``
  (GeoPackage), ``metrics`` (JSON), ``model`` (safetensors) and ``preview`` (PNG thumbnail),
  the optional ones when given.

Classification names must match ``^[0-9A-Za-z-_]+$`` (extension v2.0.0): a class name with
other characters is written with ``_`` in their place, the name as it is goes into ``title``.

.. _projection extension: https://github.com/stac-extensions/projection
.. _classification extension: https://github.com/stac-extensions/classification
.. _raster extension: https://github.com/stac-extensions/raster
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform as transform_coords
from rasterio.warp import transform_bounds

from geounet._files import write_text_atomic
from geounet.classes import ClassScheme
from geounet.errors import InputFileError, OutputError
from geounet.grid import Grid
from geounet.raster import open_raster
from geounet.vectorize import LAYER_NAME, read_class_scheme

log = logging.getLogger(__name__)

__all__ = ["COG_MEDIA_TYPE", "STAC_EXTENSIONS", "ItemAssets", "write_stac_item"]

STAC_VERSION = "1.0.0"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
GPKG_MEDIA_TYPE = "application/geopackage+sqlite3"
JSON_MEDIA_TYPE = "application/json"
PNG_MEDIA_TYPE = "image/png"
STAC_EXTENSIONS = (
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
)
"""Schema URLs of the extensions every item uses (released versions)."""
MLM_EXTENSION = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
"""The machine-learning model extension, used when the item describes its model file."""

_DENSIFY_POINTS = 21  # points per footprint edge before reprojection to EPSG:4326
_CLASS_NAME = re.compile(r"[^0-9A-Za-z_-]")


@dataclass(frozen=True)
class ItemAssets:
    """The output files an item describes; only ``classes`` is required.

    Attributes:
        classes: The class raster (``classes.tif`` of ``geounet predict``); its grid, CRS and
            class scheme (``GEOUNET_CLASSES`` tag) describe the item.
        probabilities: ``probabilities.tif`` (uint8 0-255 per class).
        polygons: ``polygons.gpkg`` of ``geounet vectorize``.
        metrics: ``metrics.json`` of ``geounet evaluate``.
        model: The model file (``model.safetensors``).
        preview: A PNG preview of the class map (``preview.png``), shown as the thumbnail.
        scene: The predicted scene's file(s) or STAC item: one ``derived_from`` link each
            (local files relative to the item, URLs and ``/vsicurl/`` paths as URLs).
    """

    classes: str | os.PathLike[str]
    probabilities: str | os.PathLike[str] | None = None
    polygons: str | os.PathLike[str] | None = None
    metrics: str | os.PathLike[str] | None = None
    model: str | os.PathLike[str] | None = None
    preview: str | os.PathLike[str] | None = None
    scene: tuple[str, ...] = ()


def write_stac_item(
    path: str | os.PathLike[str],
    *,
    item_id: str,
    assets: ItemAssets,
    datetime: dt.datetime | str | None = None,
) -> Path:
    """Write a STAC 1.0.0 Item describing a job's outputs, atomically.

    The module docstring lists what the item holds. Asset hrefs are relative to the item's
    folder (``./predict/classes.tif``), so the output folder can be moved or uploaded whole.

    Args:
        path: The item file to write (e.g. ``OUT/item.json``); an existing one is replaced.
        item_id: The item's ``id`` (e.g. the job or scene name).
        assets: The files to describe.
        datetime: The acquisition time: a timezone-aware datetime (a naive one is taken as
            UTC) or an ISO 8601 string. Default: the class raster's modification time.

    Returns:
        The written path.

    Raises:
        InputFileError: An asset file is missing, or a raster asset cannot be read (or has
            no CRS).
        OutputError: The item's folder does not exist or is not writable.
        ValueError: ``item_id`` is empty or ``datetime`` is not ISO 8601.
    """
    out = Path(path)
    if not item_id or not item_id.strip():
        raise ValueError("item_id must be a non-empty string, e.g. the scene or job name.")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise OutputError(f"{out}: folder {out.parent} does not exist or is not writable.")
    classes_path = _existing(assets.classes, "classes", "run `geounet predict` first")
    grid, scheme = _raster_grid(classes_path, "classes", read_scheme=True)
    when = _item_datetime(datetime, classes_path)
    geometry, bbox = _footprint_wgs84(grid)
    item_assets: dict[str, dict[str, Any]] = {
        "classes": {
            "href": _relative_href(classes_path, out.parent),
            "type": COG_MEDIA_TYPE,
            "title": "Class map",
            "description": "uint8 class ids; 255 = no data (not predicted).",
            "roles": ["data"],
            **_proj_fields(grid),
            "classification:classes": _classification(scheme),
            "raster:bands": [_raster_band(grid, nodata=scheme.ignore_index)],
        }
    }
    if assets.probabilities is not None:
        prob_path = _existing(assets.probabilities, "probabilities", "predict with probabilities")
        prob_grid, _ = _raster_grid(prob_path, "probabilities", read_scheme=False)
        item_assets["probabilities"] = {
            "href": _relative_href(prob_path, out.parent),
            "type": COG_MEDIA_TYPE,
            "title": "Class probabilities",
            "description": "One uint8 band per class, in class id order ("
            + ", ".join(scheme.names)
            + "): round(p * 255).",
            "roles": ["data"],
            **_proj_fields(prob_grid),
            "raster:bands": [
                {**_raster_band(prob_grid, nodata=None), "scale": 1 / 255, "offset": 0.0}
                for _ in range(prob_grid.count)
            ],
        }
    for key, value, media_type, title, roles, fix in (
        ("polygons", assets.polygons, GPKG_MEDIA_TYPE,
         f"Class polygons (layer '{LAYER_NAME}')", ["data"], "run `geounet vectorize` first"),
        ("metrics", assets.metrics, JSON_MEDIA_TYPE, "Accuracy metrics", ["metadata"],
         "run `geounet evaluate` first"),
        ("model", assets.model, "application/octet-stream", "Model file (safetensors)",
         ["model", "metadata"], "give the model file of `geounet train`"),
        ("preview", assets.preview, PNG_MEDIA_TYPE, "Class map preview", ["thumbnail"],
         "give the preview.png of `geounet predict`"),
    ):  # fmt: skip
        if value is not None:
            file = _existing(value, key, fix)
            item_assets[key] = {
                "href": _relative_href(file, out.parent),
                "type": media_type,
                "title": title,
                "roles": roles,
            }
    extensions = list(STAC_EXTENSIONS)
    mlm = _mlm_fields(Path(assets.model)) if assets.model is not None else None
    if mlm is not None:
        item_assets["model"] = {**item_assets["model"], **mlm}
        item_assets["model"]["roles"] = ["mlm:model", *item_assets["model"]["roles"]]
        extensions.append(MLM_EXTENSION)
    now = dt.datetime.now(dt.UTC)
    item = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": item_id,
        "geometry": geometry,
        "bbox": bbox,
        "properties": {
            "datetime": _iso(when),
            "created": _iso(now),
            **_proj_fields(grid),
        },
        "links": [_derived_from(p, out.parent) for p in assets.scene],
        "assets": item_assets,
    }
    write_text_atomic(out, json.dumps(item, indent=2, allow_nan=False) + "\n")
    log.info("wrote STAC item %s (%d assets)", out, len(item_assets))
    return out


def _existing(path: str | os.PathLike[str], what: str, fix: str) -> Path:
    """The path of an asset file that must exist."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{what} file {p} does not exist; {fix}, or check the path.")
    return p


@dataclass(frozen=True)
class _RasterAsset:
    """A raster asset's grid, band count and data type."""

    grid: Grid
    count: int
    dtype: str


def _raster_grid(path: Path, what: str, *, read_scheme: bool) -> tuple[_RasterAsset, ClassScheme]:
    """The grid, band count and dtype of a raster asset (and its class scheme)."""
    fix = "re-run the stage that wrote it (`geounet predict`)"
    with open_raster(path, what=f"{what} file", fix=fix) as src:
        asset = _RasterAsset(Grid.of(src), src.count, src.dtypes[0])
        tags = src.tags()
    if asset.grid.crs is None:
        raise InputFileError(
            f"{what} file {path} has no CRS, so its footprint is unknown; re-run "
            "`geounet predict` on a georeferenced scene."
        )
    scheme = read_class_scheme(tags, str(path)) if read_scheme else ClassScheme.default()
    return asset, scheme


def _proj_fields(asset: _RasterAsset) -> dict[str, Any]:
    """Projection extension v2.0.0 fields of a grid."""
    grid = asset.grid
    crs: CRS = grid.crs
    epsg = crs.to_epsg()
    fields: dict[str, Any] = {"proj:code": f"EPSG:{epsg}" if epsg else None}
    if epsg is None:
        fields["proj:wkt2"] = crs.to_wkt(version="WKT2_2019")
    fields["proj:shape"] = list(grid.shape)
    fields["proj:transform"] = list(grid.transform)[:6]
    fields["proj:bbox"] = list(grid.bounds)
    return fields


def _footprint_wgs84(asset: _RasterAsset) -> tuple[dict[str, Any], list[float]]:
    """The grid's footprint as a GeoJSON polygon and bbox in EPSG:4326, edges densified."""
    grid = asset.grid
    left, bottom, right, top = grid.bounds
    box = shapely.box(left, bottom, right, top, ccw=True)
    step = max(right - left, top - bottom) / (_DENSIFY_POINTS - 1)
    ring = np.asarray(shapely.segmentize(box, step).exterior.coords)
    lon, lat = transform_coords(grid.crs, "EPSG:4326", ring[:, 0], ring[:, 1])
    # 1e-8 degrees is about a millimetre: shorter JSON, no loss of location.
    lon, lat = np.round(lon, 8).tolist(), np.round(lat, 8).tolist()
    geometry = {"type": "Polygon", "coordinates": [[[x, y] for x, y in zip(lon, lat, strict=True)]]}
    bbox = transform_bounds(grid.crs, "EPSG:4326", left, bottom, right, top,
                            densify_pts=_DENSIFY_POINTS)  # fmt: skip
    # The bbox must hold every vertex of the geometry, whatever transform_bounds rounds.
    bbox = (min(bbox[0], *lon), min(bbox[1], *lat), max(bbox[2], *lon), max(bbox[3], *lat))
    return geometry, [float(v) for v in bbox]


def _classification(scheme: ClassScheme) -> list[dict[str, Any]]:
    """``classification:classes`` of a scheme (v2.0.0: names limited to ``[0-9A-Za-z-_]``)."""
    return [
        {
            "value": c.id,
            "name": _CLASS_NAME.sub("_", c.name),
            "title": c.name,
            "color_hint": c.hex[1:].upper(),
        }
        for c in scheme.classes
    ]


def _raster_band(asset: _RasterAsset, *, nodata: int | None) -> dict[str, Any]:
    """One ``raster:bands`` entry (raster extension v1.1.0)."""
    band: dict[str, Any] = {"data_type": asset.dtype, "sampling": "area"}
    if nodata is not None:
        band["nodata"] = nodata
    res_x, res_y = asset.grid.res
    if res_x == res_y:
        band["spatial_resolution"] = res_x
    return band


def _item_datetime(value: dt.datetime | str | None, fallback: Path) -> dt.datetime:
    """The item's datetime in UTC: the given one, else the file's modification time."""
    if value is None:
        return dt.datetime.fromtimestamp(fallback.stat().st_mtime, dt.UTC)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"datetime {value!r} is not ISO 8601; give e.g. '2017-02-16T10:21:01Z'."
            ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _iso(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, as STAC asks."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _relative_href(file: Path, base: Path) -> str:
    """``file`` relative to the folder ``base``, POSIX style, ``./``-prefixed when inside it."""
    rel = Path(os.path.relpath(file.resolve(), base.resolve())).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def _derived_from(path: str, base: Path) -> dict[str, Any]:
    """A ``derived_from`` link to a scene file, URL or STAC item the prediction was made from."""
    text = str(path)
    if text.startswith("/vsicurl/"):
        text = text[len("/vsicurl/") :]
    is_item = text.lower().endswith(".json")
    link: dict[str, Any] = {"rel": "derived_from", "href": text}
    if "://" not in text and not text.startswith("/vsi"):
        link["href"] = _relative_href(Path(text), base)
    link["type"] = "application/geo+json" if is_item else "image/tiff; application=geotiff"
    if text.lower().endswith(".jp2"):
        link["type"] = "image/jp2"
    return link


def _mlm_fields(model_path: Path) -> dict[str, Any] | None:
    """`MLM extension`_ v1.4.0 fields describing a geounet model file's input and output.

    ``None`` for a file without geounet metadata (the asset is then described by its type).

    .. _MLM extension: https://github.com/stac-extensions/mlm
    """
    from geounet.errors import GeounetError
    from geounet.modelfile import read_model_metadata

    try:
        meta = read_model_metadata(model_path)
    except GeounetError as exc:
        log.debug("no MLM fields for %s: %s", model_path, exc)
        return None
    arch, size = meta.architecture, meta.chip_size
    dims = ["batch", "channel", "height", "width"]
    if meta.recipe:
        scaling: list[dict[str, Any]] | None = None  # a recipe: see geounet:input_recipe
    else:
        norm = meta.normalization
        scaling = [{"type": "z-score", "mean": float(m), "stddev": float(s)}
                   for m, s in zip(norm.mean, norm.std, strict=True)]  # fmt: skip
    fields: dict[str, Any] = {
        "mlm:name": model_path.stem,
        "mlm:architecture": str(arch["name"]),
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "pytorch",
        "mlm:artifact_type": "safetensors",
        "mlm:accelerator": None,
        "mlm:input": [{
            "name": "bands", "bands": list(meta.bands),
            "input": {"shape": [-1, meta.in_channels, size, size], "dim_order": dims,
                      "data_type": "float32"},
            "value_scaling": scaling, "pre_processing_function": None,
        }],
        "mlm:output": [{
            "name": "logits", "tasks": ["semantic-segmentation"],
            "result": {"shape": [-1, meta.num_classes, size, size], "dim_order": dims,
                       "data_type": "float32"},
            "classification:classes": _classification(meta.classes),
            "post_processing_function": None,
        }],
        "mlm:hyperparameters": dict(arch.get("options") or {}),
    }  # fmt: skip
    if meta.recipe:
        fields["geounet:input_recipe"] = dict(meta.recipe)
    return fields
