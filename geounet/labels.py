"""Label sources rasterised onto chips: vector polygons or a class raster on any grid.

Vector labels are read once, checked (class column, CRS, overlap with the scene), reprojected
to the scene CRS when needed (the user is told), mapped to class ids and clipped to the scene.
Each chip's mask is then burnt from the polygons that intersect it (a spatial-index query), so
no scene-sized mask is ever held. Pixels no polygon covers, and polygons whose attribute value
the class map does not list, are the ignore index (255).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.features import rasterize
from shapely.geometry import box

from geounet.classes import ClassMap
from geounet.errors import CRSError, InputFileError, LabelError, ReprojectionWarning
from geounet.grid import Chip
from geounet.raster import SceneInfo, _open, read_resampled

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jp2", ".img"}


@dataclass(frozen=True)
class VectorLabels:
    """Polygons in the scene CRS with a ``class_id`` column, ready to burn into chips.

    Polygons are ordered by decreasing area, so where polygons overlap the smaller one (a pond
    in a farm) is burnt last and wins.
    """

    frame: gpd.GeoDataFrame
    ignore_index: int

    def mask(self, chip: Chip) -> np.ndarray:
        """The chip's ``(height, width)`` uint8 class mask (pixel-centre rule)."""
        height, width = chip.shape
        hits = self.frame.sindex.query(box(*chip.bounds), predicate="intersects")
        if len(hits) == 0:
            return np.full((height, width), self.ignore_index, dtype=np.uint8)
        rows = self.frame.iloc[np.sort(hits)]
        return rasterize(
            zip(rows.geometry.values, rows["class_id"].values, strict=True),
            out_shape=(height, width),
            transform=chip.transform,
            fill=self.ignore_index,
            dtype="uint8",
        )


@dataclass(frozen=True)
class RasterLabels:
    """A class raster on any grid, resampled (nearest) onto each chip.

    Its values are class ids; values outside the scheme and its nodata become the ignore index.
    """

    path: str
    num_classes: int
    ignore_index: int
    nodata: float | None = None
    lookup: np.ndarray | None = None

    def mask(self, chip: Chip) -> np.ndarray:
        """The chip's ``(height, width)`` uint8 class mask."""
        raw, covered = read_resampled(
            self.path,
            crs=chip.crs,
            transform=chip.transform,
            shape=chip.shape,
            resampling="nearest",
        )
        values = raw.astype(np.int64)
        if self.lookup is not None:
            out = self.lookup[np.clip(values, 0, len(self.lookup) - 1)]
            out[(values < 0) | (values >= len(self.lookup))] = self.ignore_index
        else:
            out = np.where((values >= 0) & (values < self.num_classes), values, self.ignore_index)
        if self.nodata is not None:
            out[values == self.nodata] = self.ignore_index
        out[~covered] = self.ignore_index
        return out.astype(np.uint8)


LabelSource = VectorLabels | RasterLabels


def load_labels(
    path: str | Path,
    scene: SceneInfo,
    class_map: ClassMap,
    *,
    column: str | None = None,
) -> LabelSource:
    """Open and validate a label source for a scene, before any chip is written.

    Args:
        path: Polygons (GeoPackage, GeoJSON, Shapefile...) or a class raster.
        scene: The scene the labels must cover.
        class_map: Attribute value -> class mapping (and the class scheme).
        column: Attribute holding the class values; defaults to the class map's ``column``.

    Returns:
        A source with a ``mask(chip)`` method.

    Raises:
        InputFileError: The file is missing or unreadable.
        LabelError: The column does not exist, no value maps to a class, or the labels do not
            intersect the scene.
        CRSError: The labels have no CRS.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"label file {p} does not exist; check the path.")
    if p.suffix.lower() in RASTER_SUFFIXES:
        return _load_raster_labels(p, scene, class_map)
    return _load_vector_labels(p, scene, class_map, column)


def _load_raster_labels(p: Path, scene: SceneInfo, class_map: ClassMap) -> RasterLabels:
    with _open(p) as src:
        if src.crs is None:
            raise CRSError(f"label raster {p} has no CRS; assign one (gdal_edit.py -a_srs ...).")
        if src.crs != scene.crs:
            msg = (
                f"label raster {p} is in {src.crs.to_string()}; warping it to the scene CRS "
                f"{scene.crs.to_string()}."
            )
            log.warning(msg)
            warnings.warn(msg, ReprojectionWarning, stacklevel=3)
        from rasterio.warp import transform_bounds

        lb = transform_bounds(src.crs, scene.crs, *src.bounds)
        nodata = src.nodata
    if not box(*lb).intersects(box(*scene.bounds)):
        raise LabelError(
            f"label raster {p} (bounds {tuple(round(v, 2) for v in lb)}) does not intersect the "
            f"scene {scene.name} (bounds {tuple(round(v, 2) for v in scene.bounds)}) in "
            f"{scene.crs.to_string()}; are they of the same place?"
        )
    lookup = None
    if class_map.values:
        # Integer raster values mapped through the class map (e.g. ESA WorldCover codes).
        try:
            pairs = {int(k): v for k, v in class_map.values.items()}
        except ValueError as exc:
            raise LabelError(
                f"class map values {list(class_map.values)} must be integers for raster labels {p}."
            ) from exc
        lookup = np.full(max(pairs) + 1, class_map.scheme.ignore_index, dtype=np.int64)
        for k, v in pairs.items():
            if k >= 0:
                lookup[k] = v
    return RasterLabels(
        str(p), class_map.scheme.num_classes, class_map.scheme.ignore_index, nodata, lookup
    )


def _load_vector_labels(
    p: Path, scene: SceneInfo, class_map: ClassMap, column: str | None
) -> VectorLabels:
    import geopandas as gpd
    import pyogrio

    try:
        info = pyogrio.read_info(p)
    except Exception as exc:  # pyogrio raises several DataSource error types
        raise InputFileError(
            f"cannot read label file {p} as vector data ({exc}); expected a GeoPackage, "
            "GeoJSON or Shapefile of polygons."
        ) from exc
    column = column or class_map.column
    fields = list(info["fields"])
    if not column:
        raise LabelError(f"no class column given for {p}; pass --class-column, one of {fields}.")
    if column not in fields:
        raise LabelError(
            f"label file {p} has no column {column!r}; its columns are {fields}. Pass "
            "--class-column with one of them."
        )
    frame = gpd.read_file(p, columns=[column])
    if frame.crs is None:
        raise CRSError(f"label file {p} has no CRS; set one (e.g. ogr2ogr -a_srs EPSG:XXXX).")
    if frame.crs != scene.crs:
        msg = (
            f"labels {p} are in {frame.crs.to_string()}; reprojecting them to the scene CRS "
            f"{scene.crs.to_string()}."
        )
        log.warning(msg)
        warnings.warn(msg, ReprojectionWarning, stacklevel=3)
        frame = frame.to_crs(scene.crs)
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    frame = frame[frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    scene_box = box(*scene.bounds)
    frame = frame[frame.intersects(scene_box)]
    if frame.empty:
        raise LabelError(
            f"no polygon of {p} intersects the scene {scene.name} (scene bounds "
            f"{tuple(round(v, 2) for v in scene.bounds)} in {scene.crs.to_string()}, label bounds "
            f"{tuple(round(v, 2) for v in info.get('total_bounds', ()) or ())}); are they of "
            "the same place?"
        )
    values = frame[column].astype(str)
    frame = frame.assign(class_id=[class_map.class_of(v) for v in values])
    unmapped = sorted(set(values[frame["class_id"] == class_map.scheme.ignore_index]))
    if unmapped:
        log.info("values of %s not in the class map (ignored): %s", column, unmapped)
    frame = frame[frame["class_id"] != class_map.scheme.ignore_index]
    if frame.empty:
        raise LabelError(
            f"no value of column {column!r} in {p} maps to a class; values found: "
            f"{sorted(set(values))[:20]}; the class map lists {sorted(class_map.values)[:20]}."
        )
    frame = frame.assign(_area=frame.area).sort_values("_area", ascending=False, kind="stable")
    frame = frame[["class_id", "geometry"]].reset_index(drop=True)
    return VectorLabels(frame, class_map.scheme.ignore_index)


def label_summary(source: LabelSource) -> dict[str, Any]:
    """A short description of a label source for ``tiling.json``."""
    if isinstance(source, VectorLabels):
        return {"kind": "vector", "polygons": len(source.frame)}
    return {"kind": "raster", "path": source.path}
