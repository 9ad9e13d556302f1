"""Class raster -> polygons, block by block, merged across block seams, simplified, filtered.

:func:`vectorize_raster` reads square blocks, labels each block's 4-connected regions (scipy)
and polygonises the labels with GDAL (``rasterio.features.shapes``) in *pixel* coordinates,
where every vertex is an integer and all geometry is exact. Pieces off the internal block edges
are finished and written at once. A union-find joins the other pieces wherever their pixels are
4-adjacent across a seam with the same class (GDAL's own 4-connectivity: pieces touching only at
a corner stay apart); after each block row, every group that does not reach the next seam is
unioned, rid of the seam's collinear vertices and mapped to the CRS with GDAL's formula
``c + col*a + row*b``. The result is polygonising the whole raster at once, vertex for vertex,
while memory holds one block, one row of seam labels and the regions open at the seam.

Simplification runs ``shapely.coverage_simplify`` (GEOS, Visvalingam-Whyatt) on each block's
pieces with ``simplify_boundary=False``: a border between two of the block's polygons is
simplified once for both (no gaps, no overlaps), the block outline and nodata edges stay fixed.
So a border crossing a seam is pinned to the pixel corner where it crosses, and pieces still
union exactly. Against simplifying the whole coverage at once, the trade-off is a possible kink
where a border crosses a seam and a result that depends on ``block_size``; in exchange memory
stays bounded and the pass single.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.features import shapes
from rasterio.windows import Window

from geounet._files import staged_file, write_errors
from geounet._qml import categorized_fill_qml, write_gpkg_style
from geounet.classes import SCHEME_TAG, ClassScheme
from geounet.errors import ConfigError, CRSError, GridMismatchError, InputFileError, OutputError
from geounet.grid import Grid
from geounet.raster import open_raster

logger = logging.getLogger(__name__)

__all__ = ["LAYER_NAME", "SCHEME_TAG", "read_class_scheme", "vectorize_raster"]

"""Dataset metadata tag holding the class scheme as JSON (``ClassScheme.to_dict()``)."""

LAYER_NAME = "polygons"
"""Name of the GeoPackage layer :func:`vectorize_raster` writes."""

_FLUSH_FEATURES = 20_000  # features buffered before an append to the GeoPackage
_FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


@dataclass
class _Region:
    """A region (or the pieces of one) in pixel coordinates, with its pixel statistics."""

    class_id: int
    pieces: list[shapely.Polygon]
    count: int
    area_m2: float
    prob_sum: float


@dataclass(frozen=True)
class _Inputs:
    """What the block loop needs to know about the inputs, all checked up front."""

    class_path: Path
    prob_path: Path | None
    grid: Grid  # of the class raster (and of the probabilities)
    scheme: ClassScheme
    polygonise: np.ndarray  # (256,) bool: which pixel values become polygons
    simplify_px: float  # coverage-simplification tolerance in pixels (0: none)
    keep_ids: tuple[int, ...] | None  # classes written (None: all)
    pixel_area_m2: float  # a pixel's area; of the centre row for a geographic CRS
    row_area_m2: np.ndarray | None  # geographic CRS: a pixel's area on the ellipsoid, per row


def read_class_scheme(tags: dict[str, str], source: str = "class raster") -> ClassScheme:
    """The class scheme stored in a class raster's metadata, or the default one.

    Args:
        tags: The dataset's metadata tags (``src.tags()``).
        source: What to name in an error message.

    Returns:
        The scheme from the :data:`SCHEME_TAG` tag, else ``ClassScheme.default()``.

    Raises:
        InputFileError: When the tag is present but not a valid scheme.
    """
    raw = tags.get(SCHEME_TAG)
    if raw is None:
        logger.info("%s has no %s tag; using the default class scheme", source, SCHEME_TAG)
        return ClassScheme.default()
    try:
        return ClassScheme.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFileError(
            f"{source}: the {SCHEME_TAG} tag is not a class scheme ({exc}); rewrite it with "
            "json.dumps(ClassScheme.to_dict()) or remove it to use the default scheme."
        ) from exc


def vectorize_raster(
    class_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    probabilities_path: str | os.PathLike[str] | None = None,
    simplify_m: float = 0.0,
    min_area_m2: float = 0.0,
    classes: Sequence[str] | None = None,
    block_size: int = 1024,
) -> Path:
    """Polygonise a class raster into one GeoPackage layer, block by block.

    Each 4-connected region of one class becomes a polygon (holes kept, valid), exactly as
    polygonising the whole raster at once would give. The layer :data:`LAYER_NAME` has the
    raster's CRS and the fields ``class_id`` (int32), ``class_name`` (str), ``area_m2`` (float64)
    and, with probabilities, ``mean_prob`` (float64 in [0, 1]); a default QGIS style (categorised
    by ``class_id`` in the scheme's colours) is stored in the ``layer_styles`` table.
    ``area_m2`` is the area of the region's pixels (as classified, before simplification), in
    square metres: planar for a projected CRS (converted from its linear unit), on the CRS's
    ellipsoid for a geographic one (exact cell areas between parallels; north-up grids only).
    Class names and colours come from the raster's :data:`SCHEME_TAG` tag; pixels equal to the
    scheme's ignore index or the raster's nodata are not polygonised. The output is written
    under a temporary name and renamed when complete.

    Args:
        class_path: Single-band uint8 class raster with a CRS (``classes.tif``).
        out_path: The ``.gpkg`` to write; an existing file is replaced.
        probabilities_path: Optional uint8 raster (0-255 = 0-1), one band per class, on the same
            grid; gives ``mean_prob``, the mean of the polygon's own class band over its pixels.
        simplify_m: Simplification tolerance in metres (0: none). Vertices whose triangle with
            their neighbours is smaller than ``simplify_m ** 2`` are removed; shared borders stay
            shared, nodata and raster edges stay as they are, and a border stays pinned where it
            crosses a block seam. Geographic rasters convert with their centre pixel's size.
        min_area_m2: Drop polygons whose ``area_m2`` is smaller, after seams are merged.
        classes: Class names to keep (default: all).
        block_size: Block edge in pixels. Memory holds one block row's polygons plus the regions
            open at the seam below it (a region spanning the raster is held until it ends).

    Returns:
        The path of the written GeoPackage.

    Raises:
        InputFileError: A raster is missing, unreadable, or not uint8 with the right bands.
        CRSError: The class raster has no CRS, or is a rotated geographic inputs.
        GridMismatchError: The probabilities are not on the class raster's inputs.
        ConfigError: An unknown class name or a negative tolerance, area or block size.
        OutputError: ``out_path`` is not a ``.gpkg`` in a writable folder.
    """
    out = Path(out_path)
    _check_settings(simplify_m, min_area_m2, block_size)
    inputs = _open_inputs(Path(class_path), probabilities_path, classes, simplify_m)
    _check_output(out)
    # A GeoPackage is written through SQLite: a full disk says "database or disk is full".
    with staged_file(out) as tmp, write_errors(out):
        writer = _LayerWriter(tmp, inputs, min_area_m2=min_area_m2)
        _vectorize_blocks(inputs, writer, int(block_size))
        writer.close()
    logger.info("wrote %d polygons to %s (layer %r)", writer.count, out, LAYER_NAME)
    return out


def _check_settings(simplify_m: float, min_area_m2: float, block_size: int) -> None:
    """Refuse negative tolerances and block sizes that are not integers >= 2."""
    if simplify_m < 0 or min_area_m2 < 0 or int(block_size) != block_size or block_size < 2:
        raise ConfigError(
            f"simplify_m ({simplify_m}) and min_area_m2 ({min_area_m2}) must be >= 0 and "
            f"block_size ({block_size}) an integer >= 2."
        )


def _open_inputs(
    class_path: Path,
    prob_path: str | os.PathLike[str] | None,
    classes: Sequence[str] | None,
    simplify_m: float,
) -> _Inputs:
    """Check the rasters and the class filter before any work; return the inputs."""
    fix = "pass the class raster written by `geounet predict` (single-band uint8 with a CRS)"
    with open_raster(class_path, fix=fix) as src:
        if src.count != 1 or src.dtypes[0] != "uint8":
            raise InputFileError(
                f"{class_path}: expected a single-band uint8 class raster, got {src.count} "
                f"band(s) of {src.dtypes[0]}; {fix}."
            )
        if src.crs is None:
            raise CRSError(f"{class_path} has no CRS; assign one (gdal_edit.py -a_srs EPSG:...).")
        scheme = read_class_scheme(src.tags(), str(class_path))
        grid, nodata = Grid.of(src), src.nodata
    shape, transform, crs = grid.shape, grid.transform, grid.crs
    keep_ids = None if classes is None else tuple(_class_ids(scheme, classes))
    polygonise = np.ones(256, dtype=bool)
    polygonise[scheme.ignore_index] = False
    if nodata is not None and float(nodata).is_integer() and 0 <= nodata <= 255:
        polygonise[int(nodata)] = False
    if keep_ids is not None and not simplify_m:
        # Unwanted classes need not be polygonised, except when simplifying: then they are part
        # of the coverage whose shared borders get simplified, and are dropped on writing.
        polygonise &= np.isin(np.arange(256), keep_ids)
    prob = None if prob_path is None else Path(prob_path)
    if prob is not None:
        with open_raster(prob, fix="pass the probabilities `geounet predict` wrote") as src:
            if src.count != scheme.num_classes or set(src.dtypes) != {"uint8"}:
                raise InputFileError(
                    f"{prob}: expected {scheme.num_classes} uint8 bands (one per class of "
                    f"{scheme.names}), got {src.count} of {sorted(set(src.dtypes))}."
                )
            if not Grid.of(src).matches(grid, tolerance=1e-5):
                raise GridMismatchError(
                    f"{prob} ({src.width}x{src.height}, {src.crs}) is not on the grid of "
                    f"{class_path} ({shape[1]}x{shape[0]}, {crs}); use the pair predict wrote."
                )
    pixel_area_m2, row_area_m2 = _pixel_areas(
        CRS.from_wkt(crs.to_wkt()), transform, shape[0], class_path
    )
    simplify_px = simplify_m / np.sqrt(pixel_area_m2)
    return _Inputs(
        class_path,
        prob,
        grid,
        scheme,
        polygonise,
        simplify_px,
        keep_ids,
        pixel_area_m2,
        row_area_m2,
    )


def _pixel_areas(
    crs: CRS, transform: Affine, height: int, path: Path
) -> tuple[float, np.ndarray | None]:
    """A pixel's area in m2 (planar; the centre row's if geographic), and per row if geographic."""
    if not crs.is_geographic:
        factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        return abs(transform.determinant) * factor**2, None
    if transform.b or transform.d:
        raise CRSError(
            f"{path} is a rotated geographic grid, whose pixel areas are not "
            "supported; warp it north-up (gdalwarp) or to a projected CRS."
        )
    # A cell between two parallels: a^2/2 * dlon * (q(lat2) - q(lat1)) with Snyder's authalic
    # q (Map Projections - A Working Manual, eq. 3-12); exact, and additive over pixels.
    geod = crs.get_geod()
    e2 = geod.f * (2 - geod.f)
    edges = np.radians(np.clip(transform.f + transform.e * np.arange(height + 1), -90, 90))
    sin = np.sin(edges)
    if e2 > 0:
        e = np.sqrt(e2)
        q = (1 - e2) * (sin / (1 - e2 * sin**2) - np.log((1 - e * sin) / (1 + e * sin)) / (2 * e))
    else:
        q = 2 * sin
    rows = 0.5 * geod.a**2 * abs(np.radians(transform.a)) * np.abs(np.diff(q))
    return float(rows[height // 2]), rows


def _class_ids(scheme: ClassScheme, names: Sequence[str]) -> list[int]:
    """Ids of the named classes; unknown names fail with the valid ones and a hint."""
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in scheme.names:
            close = difflib.get_close_matches(name, scheme.names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown class {name!r}; the raster has {scheme.names}.{hint}")
    return [scheme.id_of(name) for name in names]


def _check_output(out: Path) -> None:
    """Fail early on an output that cannot be written."""
    if out.suffix.lower() != ".gpkg":
        raise OutputError(f"{out}: polygons are written as a GeoPackage; give a .gpkg path.")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise OutputError(f"{out}: folder {out.parent} does not exist or is not writable.")


def _vectorize_blocks(inputs: _Inputs, writer: _LayerWriter, block_size: int) -> None:
    """The block loop: polygonise each block, join pieces across seams, pass finished ones on."""
    height, width = inputs.grid.shape
    joiner = _SeamJoiner()
    above = np.zeros(width, np.int64), np.zeros(width, np.uint8)  # seam ids and classes
    probs_cm = nullcontext() if inputs.prob_path is None else open_raster(inputs.prob_path)
    with open_raster(inputs.class_path) as src, probs_cm as prob_src:
        for row_off in range(0, height, block_size):
            bottom = np.zeros(width, np.int64), np.zeros(width, np.uint8)
            left: tuple[np.ndarray, np.ndarray] | None = None
            finished: list[_Region] = []
            for col_off in range(0, width, block_size):
                window = Window(
                    col_off,
                    row_off,
                    min(block_size, width - col_off),
                    min(block_size, height - row_off),
                )
                data = src.read(1, window=window)
                probs = None if prob_src is None else prob_src.read(window=window)
                top_ids, bottom_ids, left_ids, right_ids = joiner.add_block(
                    inputs, window, data, probs, finished
                )
                if left is not None:
                    joiner.join(left, (left_ids, data[:, 0]))
                cols = slice(col_off, col_off + window.width)
                if row_off > 0:
                    joiner.join((above[0][cols], above[1][cols]), (top_ids, data[0]))
                left = right_ids, data[:, -1]
                bottom[0][cols], bottom[1][cols] = bottom_ids, data[-1]
            last = row_off + block_size >= height
            finished.extend(joiner.close(None if last else bottom[0]))
            above = bottom
            writer.write(*_finish(inputs, finished))


class _SeamJoiner:
    """Union-find over the block pieces that touch an internal block edge (a seam)."""

    def __init__(self) -> None:
        self._parent: dict[int, int] = {}
        self._regions: dict[int, _Region] = {}  # open regions by union-find root
        self._next_id = 1

    def add_block(
        self,
        inputs: _Inputs,
        window: Window,
        data: np.ndarray,
        probs: np.ndarray | None,
        finished: list[_Region],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Polygonise one block: pieces off the seams go to ``finished``, the others stay open.

        Returns:
            The ids along the block's top, bottom, left and right edges (0 where no polygon).
        """
        labels, class_of = _label_block(data, inputs.polygonise)
        flat = labels.ravel()
        counts = np.bincount(flat, minlength=len(class_of))
        if inputs.row_area_m2 is None:
            areas = counts * inputs.pixel_area_m2
        else:
            rows = inputs.row_area_m2[window.row_off : window.row_off + window.height]
            areas = np.bincount(flat, weights=np.repeat(rows, window.width), minlength=len(counts))
        sums = np.full(len(class_of), np.nan)
        if probs is not None:
            own = np.take_along_axis(probs, np.minimum(data, len(probs) - 1)[None], axis=0)[0]
            sums = np.bincount(flat, weights=own.ravel(), minlength=len(class_of))
            sums[class_of >= len(probs)] = np.nan  # a value outside the scheme has no band
        edges = [labels[0], labels[-1], labels[:, 0], labels[:, -1]]
        inner = [
            window.row_off > 0,
            window.row_off + window.height < inputs.grid.shape[0],
            window.col_off > 0,
            window.col_off + window.width < inputs.grid.shape[1],
        ]
        on_seam = np.zeros(len(class_of), dtype=bool)
        for edge, is_inner in zip(edges, inner, strict=True):
            on_seam[edge] |= is_inner
        on_seam[0] = False
        base = self._next_id - 1
        self._next_id += len(class_of) - 1
        origin = Affine.translation(window.col_off, window.row_off)
        found = list(shapes(labels, mask=labels > 0, connectivity=4, transform=origin))
        polygons = _polygons(g for g, _ in found)
        if inputs.simplify_px > 0 and len(polygons):
            polygons = _simplify_block(polygons, labels, window, inputs.simplify_px)
        for (_, value), polygon in zip(found, polygons, strict=True):
            label = int(value)
            region = _Region(
                int(class_of[label]),
                [polygon],
                int(counts[label]),
                float(areas[label]),
                float(sums[label]),
            )
            if not on_seam[label]:
                finished.append(region)
            elif base + label in self._regions:  # never for GDAL: one polygon per component
                self._regions[base + label].pieces.extend(region.pieces)
            else:
                self._parent[base + label] = base + label
                self._regions[base + label] = region
        top, bottom, left, right = (np.where(e > 0, e.astype(np.int64) + base, 0) for e in edges)
        return top, bottom, left, right

    def join(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
        """Join the pieces on two sides of a seam: ids and classes of facing pixel lines."""
        same = (a[0] > 0) & (b[0] > 0) & (a[1] == b[1])
        for x, y in np.unique(np.stack([a[0][same], b[0][same]], axis=1), axis=0):
            root_x, root_y = self._find(int(x)), self._find(int(y))
            if root_x == root_y:
                continue
            if len(self._regions[root_x].pieces) < len(self._regions[root_y].pieces):
                root_x, root_y = root_y, root_x
            kept, gone = self._regions[root_x], self._regions.pop(root_y)
            kept.pieces += gone.pieces
            kept.count += gone.count
            kept.area_m2 += gone.area_m2
            kept.prob_sum += gone.prob_sum
            self._parent[root_y] = root_x

    def close(self, seam_ids: np.ndarray | None) -> list[_Region]:
        """Remove and return the regions that do not reach the seam below (all at the end)."""
        if seam_ids is None:
            done, self._regions, self._parent = list(self._regions.values()), {}, {}
            return done
        seam_ids = np.unique(seam_ids[seam_ids > 0])
        # Only ids on the new seam can be looked up again: keep the union-find that small.
        parent = {int(i): self._find(int(i)) for i in seam_ids}
        open_roots = set(parent.values())
        done = [r for root, r in self._regions.items() if root not in open_roots]
        self._regions = {root: r for root, r in self._regions.items() if root in open_roots}
        self._parent = parent | {root: root for root in open_roots}
        return done

    def _find(self, node: int) -> int:
        parent = self._parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node


def _label_block(data: np.ndarray, polygonise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected regions of one block: int32 labels (0: none) and each label's class."""
    from scipy import ndimage  # noqa: PLC0415 - keep `geounet --help` light

    labels = np.zeros(data.shape, np.int32)
    class_of = [0]
    present = np.flatnonzero((np.bincount(data.ravel(), minlength=256) > 0) & polygonise)
    for value in present:
        component, count = ndimage.label(data == value, structure=_FOUR_CONNECTED)
        np.add(labels, component + (len(class_of) - 1), out=labels, where=component > 0)
        class_of.extend([int(value)] * count)
    return labels, np.array(class_of, dtype=np.int64)


def _polygons(geojson: Iterable[dict]) -> np.ndarray:
    """GeoJSON-like polygons -> shapely, in one vectorised call (4x faster than ``shape``)."""
    rings, ring_counts = [], []
    for geom in geojson:
        rings.extend(np.asarray(ring, dtype=np.float64) for ring in geom["coordinates"])
        ring_counts.append(len(geom["coordinates"]))
    if not rings:
        return np.array([], dtype=object)
    offsets = (np.cumsum([0] + [len(r) for r in rings]), np.cumsum([0, *ring_counts]))
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, np.concatenate(rings), offsets)


def _finish(inputs: _Inputs, regions: list[_Region]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Union each region's pieces; return pixel-space polygons and their attributes."""
    geoms = np.array([_union_pieces(r.pieces) for r in regions] or [], dtype=object)
    # Seams leave vertices inside straight runs, and so do fixed edges of simplified pieces.
    touched = np.array([len(r.pieces) > 1 or inputs.simplify_px > 0 for r in regions], bool)
    geoms[touched] = _drop_vertices(geoms[touched])
    counts = np.array([r.count for r in regions], np.float64)
    attrs = {
        "class_id": np.array([r.class_id for r in regions], np.int32),
        "area_m2": np.array([r.area_m2 for r in regions], np.float64),
        "mean_prob": np.array([r.prob_sum for r in regions], np.float64) / counts / 255.0,
    }
    return geoms, attrs


def _union_pieces(pieces: list[shapely.Polygon]) -> shapely.Polygon:
    """One polygon from pieces that share edges across seams (exact: pixel coordinates)."""
    if len(pieces) == 1:
        return pieces[0]
    # A piece's holes never touch its block's edges, so they cannot change in the union: overlay
    # only the shells (a field full of buildings has thousands of holes) and add them back.
    union = shapely.union_all([shapely.Polygon(p.exterior) for p in pieces])
    holes = [hole for p in pieces for hole in p.interiors]
    return shapely.Polygon(union.exterior, [*union.interiors, *holes])


def _simplify_block(
    polygons: np.ndarray, labels: np.ndarray, window: Window, tolerance_px: float
) -> np.ndarray:
    """Coverage-simplify one block's polygons; the block outline and nodata edges stay fixed.

    GDAL leaves no vertex where a neighbour's border meets a straight edge (a T-junction), but
    coverage simplification only sees a border as shared when both sides have the same
    vertices. So the rings are densified to every pixel corner and then thinned back to their
    corners plus the junctions: corners where three or more labels (or the block's outside) meet.
    """
    padded = np.pad(labels, 1, constant_values=-1)
    a, b, c, d = padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    distinct = 1 + (b != a) + ((c != a) & (c != b)) + ((d != a) & (d != b) & (d != c))
    junctions = distinct >= 3  # (h + 1, w + 1): one per pixel corner of the block

    def is_junction(xy: np.ndarray) -> np.ndarray:
        cols = xy[:, 0].astype(np.int64) - window.col_off
        rows = xy[:, 1].astype(np.int64) - window.row_off
        return junctions[rows, cols]

    dense = shapely.transform(shapely.segmentize(polygons, 1.0), np.round)
    noded = _drop_vertices(dense, keep=is_junction)
    return shapely.coverage_simplify(noded, tolerance_px, simplify_boundary=False)


def _drop_vertices(
    polygons: np.ndarray, keep: Callable[[np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """Remove vertices inside straight row or column runs, except where ``keep(xy)`` says.

    Only axis-parallel runs: mapped to the CRS they stay exactly straight (x hangs on the column
    alone, y on the row). A vertex inside a simplified diagonal is kept, since another ring may
    touch this one there, and after the float transform it would no longer lie on the line.
    Vectorised over all rings of all polygons.
    """
    if not len(polygons):
        return polygons
    _, xy, (ring_offsets, polygon_offsets) = shapely.to_ragged_array(
        shapely.remove_repeated_points(polygons)
    )
    ring = np.repeat(np.arange(len(ring_offsets) - 1), np.diff(ring_offsets))
    first, closing = ring_offsets[:-1][ring], ring_offsets[1:][ring] - 1
    index = np.arange(len(xy))
    before = np.where(index == first, closing - 1, index - 1)
    after = np.where(index >= closing - 1, first, index + 1)
    straight = ((xy[before] == xy) & (xy == xy[after])).any(axis=1)
    if keep is not None:
        straight &= ~keep(xy)
    kept = np.flatnonzero(~straight & (index != closing))
    counts = np.bincount(ring[kept], minlength=len(ring_offsets) - 1)
    ends = np.cumsum(counts)
    # Close each ring again with its first kept vertex.
    coords = np.insert(xy[kept], ends, xy[kept[ends - counts]], axis=0)
    offsets = (np.concatenate([[0], np.cumsum(counts + 1)]), polygon_offsets)
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, offsets)


def _to_crs(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel -> CRS coordinates with GDAL's own formula, so results match GDALPolygonize."""
    t = transform

    def apply(cr: np.ndarray) -> np.ndarray:
        col, row = cr[:, 0], cr[:, 1]
        return np.column_stack([t.c + col * t.a + row * t.b, t.f + col * t.d + row * t.e])

    return shapely.transform(geoms, apply)


class _LayerWriter:
    """Appends filtered polygons to the GeoPackage layer; adds the QGIS style on close."""

    def __init__(self, path: Path, inputs: _Inputs, *, min_area_m2: float) -> None:
        self.path, self.inputs, self.min_area_m2 = path, inputs, min_area_m2
        self.count = 0
        self._buffer: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self._buffered = 0
        self._created = False

    def close(self) -> None:
        """Write what is buffered (creating the layer even when empty) and the style."""
        self._flush(force=True)
        write_gpkg_style(self.path, LAYER_NAME, categorized_fill_qml(self.inputs.scheme), "classes")

    def write(self, geoms_px: np.ndarray, attrs: dict[str, np.ndarray]) -> None:
        """Filter by class and area, map to the CRS and buffer (pixel-space input)."""
        keep = attrs["area_m2"] >= self.min_area_m2 if len(geoms_px) else np.zeros(0, bool)
        if self.inputs.keep_ids is not None:
            keep &= np.isin(attrs["class_id"], self.inputs.keep_ids)
        if keep.any():
            geoms = shapely.orient_polygons(_to_crs(geoms_px[keep], self.inputs.grid.transform))
            self._buffer.append((geoms, {k: v[keep] for k, v in attrs.items()}))
            self._buffered += len(geoms)
        self._flush(force=False)

    def _flush(self, force: bool) -> None:
        if self._buffered < (_FLUSH_FEATURES if not force else 1 if self._created else 0):
            return  # the first flush always runs, so even an empty result has its layer
        import pyogrio.raw  # noqa: PLC0415 - keep `geounet --help` light

        geoms = np.concatenate([g for g, _ in self._buffer] or [np.array([], object)])
        attrs = {
            k: np.concatenate([a[k] for _, a in self._buffer] or [np.zeros(0)])
            for k in ("class_id", "area_m2", "mean_prob")
        }
        names = self.inputs.scheme.names
        if (attrs["class_id"] >= len(names)).any():
            logger.warning(
                "%s holds values outside the class scheme %s; naming them class_<id>",
                self.inputs.class_path,
                names,
            )
        fields = {
            "class_id": attrs["class_id"].astype(np.int32),
            "class_name": np.array(
                [names[i] if i < len(names) else f"class_{i}" for i in attrs["class_id"]],
                dtype=object,
            ),
            "area_m2": attrs["area_m2"].astype(np.float64),
        }
        if self.inputs.prob_path is not None:
            fields["mean_prob"] = attrs["mean_prob"].astype(np.float64)
        pyogrio.raw.write(
            self.path,
            shapely.to_wkb(geoms),
            list(fields.values()),
            list(fields),
            layer=LAYER_NAME,
            driver="GPKG",
            geometry_type="Polygon",
            crs=self.inputs.grid.crs.to_wkt(),
            append=self._created,
            # GeoPackage 1.2: GDAL 3.10 writes 1.4 by default, which QGIS 3.22's GDAL warns about.
            dataset_options=None if self._created else {"VERSION": "1.2"},
        )
        self._created = True
        self.count += len(geoms)
        self._buffer, self._buffered = [], 0
