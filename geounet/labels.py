"""Label sources rasterised onto chips: vector polygons or a class raster on any grid.

Vector labels are read once, checked (class column, CRS, overlap with the scene), reprojected
to the scene CRS when needed (the user is told), mapped to class ids and clipped to the scene.
Each chip's mask is then burnt from the polygons that intersect it (a spatial-index query), so
no scene-sized mask is ever held. Pixels no polygon covers, and polygons whose attribute value
the class map does not list, are the ignore index (255), unless ``background="unlabelled"``
makes the pixels outside every polygon a background class (footprint labels), optionally with
a ring of ignore ``ignore_buffer_m`` wide around the polygons.

A class raster without a class map has its classes taken from the raster itself
(:func:`class_map_from_raster`): the geounet scheme it carries, or its category names, colour
table and distinct codes, remapped to ids ``0..K-1``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rasterio.errors
import rasterio.windows
from rasterio.features import rasterize
from shapely.geometry import box

from geounet._qml import read_category_names
from geounet.classes import SCHEME_TAG, ClassInfo, ClassMap, ClassScheme
from geounet.errors import (
    ConfigError,
    CRSError,
    InputFileError,
    LabelError,
    ReprojectionWarning,
)
from geounet.grid import Chip
from geounet.raster import SceneInfo, _open, read_resampled

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jp2", ".img"}

Background = Literal["ignore", "unlabelled"]

# Colours of classes taken from a raster without a colour table (matplotlib's tab10, cycled).
_PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


@dataclass(frozen=True)
class LabelOptions:
    """How labels become class masks (beyond the class map).

    Attributes:
        background: ``"ignore"``: pixels outside every polygon are 255 (complete labels, e.g.
            land use); ``"unlabelled"``: they are the background class (footprint labels such
            as buildings or fields: what is not drawn is "other"). Pixels outside the scene's
            valid area stay 255 either way.
        background_class: Name of the background class (default: class 0 of the scheme).
        ignore_buffer_m: With ``background="unlabelled"``, a ring this wide (CRS units, metres)
            around every polygon is 255: footprints drawn a little off do not teach the model
            that building edges are background. A pixel is in the ring when its centre is
            within this distance of a polygon and in none.
        classes_from_labels: Take the classes from a class raster (its scheme tag, category
            names, colour table or distinct codes). ``None``: yes when no class map is given.
    """

    background: Background = "ignore"
    background_class: str | None = None
    ignore_buffer_m: float = 0.0
    classes_from_labels: bool | None = None

    def __post_init__(self) -> None:
        if self.background not in ("ignore", "unlabelled"):
            raise ConfigError(
                f"background must be 'ignore' or 'unlabelled', got {self.background!r}."
            )
        if self.ignore_buffer_m < 0:
            raise ConfigError(f"ignore_buffer_m must be >= 0, got {self.ignore_buffer_m}.")
        if self.ignore_buffer_m > 0 and self.background != "unlabelled":
            raise ConfigError(
                f"ignore_buffer_m {self.ignore_buffer_m} needs background: unlabelled (with "
                "background: ignore every pixel outside the polygons is ignored already)."
            )
        if self.background_class is not None and self.background != "unlabelled":
            raise ConfigError(
                f"background_class {self.background_class!r} needs background: unlabelled."
            )

    def background_id(self, scheme: ClassScheme) -> int:
        """The value of pixels outside every polygon: the ignore index or the background id."""
        if self.background == "ignore":
            return scheme.ignore_index
        if self.background_class is None:
            return 0
        if self.background_class not in scheme.names:
            raise ConfigError(
                f"background_class {self.background_class!r} is not a class; the classes are "
                f"{scheme.names}."
            )
        return scheme.id_of(self.background_class)


@dataclass(frozen=True)
class VectorLabels:
    """Polygons in the scene CRS with a ``class_id`` column, ready to burn into chips.

    Polygons are ordered by decreasing area, so where polygons overlap the smaller one (a pond
    in a farm) is burnt last and wins.
    """

    frame: gpd.GeoDataFrame
    ignore_index: int
    background: int | None = None
    rings: gpd.GeoSeries | None = None

    def mask(self, chip: Chip) -> np.ndarray:
        """The chip's ``(height, width)`` uint8 class mask (pixel-centre rule).

        Pixels outside every polygon are the background id (the ignore index by default);
        the ignore rings are burnt before the polygons, so a polygon always wins over a ring.
        """
        height, width = chip.shape
        fill = self.ignore_index if self.background is None else self.background
        out = np.full((height, width), fill, dtype=np.uint8)
        window = box(*chip.bounds)
        if self.rings is not None:
            ring_hits = self.rings.sindex.query(window, predicate="intersects")
            if len(ring_hits):
                rasterize(
                    ((g, self.ignore_index) for g in self.rings.iloc[np.sort(ring_hits)].values),
                    out=out,
                    transform=chip.transform,
                )
        hits = self.frame.sindex.query(window, predicate="intersects")
        if len(hits) == 0:
            return out
        rows = self.frame.iloc[np.sort(hits)]
        rasterize(
            zip(rows.geometry.values, rows["class_id"].values, strict=True),
            out=out,
            transform=chip.transform,
        )
        return out


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
    options: LabelOptions | None = None,
) -> LabelSource:
    """Open and validate a label source for a scene, before any chip is written.

    Args:
        path: Polygons (GeoPackage, GeoJSON, Shapefile...) or a class raster.
        scene: The scene the labels must cover.
        class_map: Attribute value -> class mapping (and the class scheme).
        column: Attribute holding the class values; defaults to the class map's ``column``.
        options: Background handling of polygons (default: outside every polygon is ignored).

    Returns:
        A source with a ``mask(chip)`` method.

    Raises:
        InputFileError: The file is missing or unreadable.
        LabelError: The column does not exist, no value maps to a class, or the labels do not
            intersect the scene.
        CRSError: The labels have no CRS.
        ConfigError: Background options given for a class raster, or an unknown background
            class.
    """
    options = options or LabelOptions()
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"label file {p} does not exist; check the path.")
    if p.suffix.lower() in RASTER_SUFFIXES:
        if options.background != "ignore":
            raise ConfigError(
                f"background: {options.background} applies to polygon labels; {p} is a class "
                "raster, whose unlabelled pixels are its nodata (map codes to a background "
                "class under `mapping:` instead)."
            )
        return _load_raster_labels(p, scene, class_map)
    source = _load_vector_labels(p, scene, class_map, column)
    if options.background == "ignore":
        return source
    background = options.background_id(class_map.scheme)
    rings = None
    if options.ignore_buffer_m > 0:
        if not scene.crs.is_projected:
            raise ConfigError(
                f"ignore_buffer_m is in metres, but the scene {scene.name} is in "
                f"{scene.crs.to_string()} (degrees); warp the scene to a projected CRS (a UTM "
                "zone, gdalwarp -t_srs) or drop ignore_buffer_m."
            )
        # quad_segs=32: the rounded corners deviate < 0.05 % of the buffer from the true
        # distance, well inside a pixel for any buffer a footprint needs.
        rings = source.frame.geometry.buffer(options.ignore_buffer_m, quad_segs=32)
        rings = rings[~rings.is_empty].reset_index(drop=True)
    return VectorLabels(source.frame, source.ignore_index, background, rings)


def class_map_from_raster(path: str | Path, scene: SceneInfo | None) -> ClassMap:
    """The classes of a class raster, taken from the raster itself (no class map given).

    In order: the geounet scheme it carries (the ``GEOUNET_CLASSES`` tag of a geounet class
    raster: values are already ids); else its category names (GDAL ``CategoryNames`` or a
    raster attribute table in ``NAME.aux.xml``), which give the classes and their names; else
    the distinct codes found over the scene (its nodata left out). Codes are remapped, in
    increasing order, to ids ``0..K-1``; colours come from its colour table when it has one.

    Args:
        path: The class raster.
        scene: The scene; distinct codes are counted over its footprint only (``None``: over
            the whole raster, e.g. one class map for many scenes).

    Returns:
        A class map whose values are the codes (as text) -> ids.

    Raises:
        LabelError: The raster is not an integer raster, or holds no code over the scene.
    """
    import json

    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    p = Path(path)
    with _open(p) as src:
        tag = src.tags().get(SCHEME_TAG)
        if tag:
            scheme = ClassScheme.from_dict(json.loads(tag))
            return ClassMap(scheme, {str(c.id): c.id for c in scheme.classes})
        if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
            raise LabelError(
                f"label raster {p} holds {src.dtypes[0]} values; class rasters hold integer "
                "codes. Give a class map, or convert it (gdal_translate -ot Byte)."
            )
        try:
            colours = {k: v[:3] for k, v in src.colormap(1).items()}
        except ValueError:  # no colour table
            colours = {}
        names = read_category_names(p)
        nodata = src.nodata
        if names:
            codes = sorted(k for k in names if k != nodata)
            origin = "its category names"
        else:
            window: rasterio.windows.Window | None = rasterio.windows.Window(
                0, 0, src.width, src.height
            )
            origin = "its distinct codes"
            if scene is not None:
                bounds = transform_bounds(scene.crs, src.crs, *scene.bounds)
                try:
                    window = (
                        from_bounds(*bounds, transform=src.transform)
                        .round_offsets()
                        .round_lengths()
                        .intersection(window)
                    )
                except rasterio.errors.WindowError:  # no overlap: no code
                    window = None
                origin += " over the scene"
            codes = _distinct_codes(src, window, nodata) if window is not None else []
    if not codes:
        where = f"the scene {scene.name}" if scene is not None else "its extent"
        raise LabelError(
            f"label raster {p} holds no code over {where} (only nodata); check that it covers "
            "the scene and that its nodata value is right."
        )
    infos, taken = [], set()
    for i, code in enumerate(codes):
        name = names.get(code) or f"code_{code}"
        if name in taken:
            name = f"{name}_{code}"
        taken.add(name)
        colour = tuple(colours.get(code, _PALETTE[i % len(_PALETTE)]))
        infos.append(ClassInfo(i, name, (int(colour[0]), int(colour[1]), int(colour[2]))))
    class_map = ClassMap(ClassScheme(tuple(infos)), {str(c): i for i, c in enumerate(codes)})
    pairs = ", ".join(f"{c} -> {i} {infos[i].name}" for i, c in enumerate(codes))
    log.warning(
        "label raster %s has no class map: its %d classes are taken from %s%s (%s); give "
        "--class-map to choose them.",
        p,
        len(codes),
        origin,
        " and colour table" if colours else "",
        pairs,
    )
    return class_map


def _distinct_codes(src: Any, window: Any, nodata: float | None) -> list[int]:
    """The distinct values of band 1 inside ``window``, read block row by block row."""
    found: set[int] = set()
    step = 1024
    for r in range(int(window.row_off), int(window.row_off + window.height), step):
        h = min(step, int(window.row_off + window.height) - r)
        part = rasterio.windows.Window(window.col_off, r, window.width, h)
        found.update(int(v) for v in np.unique(src.read(1, window=part)))
    return sorted(v for v in found if nodata is None or v != nodata)


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
        summary: dict[str, Any] = {"kind": "vector", "polygons": len(source.frame)}
        summary["background"] = "ignore" if source.background is None else source.background
        return summary
    return {"kind": "raster", "path": source.path}
