"""Tiling: cut a scene into georeferenced chips with label masks, a chip index and statistics.

Output layout (``out_dir``)::

    images/<chip_id>.tif   chip GeoTIFF: scene CRS, the chip window's exact transform, all bands
    labels/<chip_id>.tif   uint8 class mask, 255 = ignore/nodata, palette of the class colours
    index.gpkg             layer "chips": one polygon per chip (scene CRS) with its id, scene,
                           paths, split, nodata fraction and pixel count per class
    stats.json             per-band mean/std/min/max/percentiles over the scene's valid pixels
    classes.json           the class scheme: id, name, colour (and the ignore index)
    tiling.json            the scene, the options and the counts (chips, labelled pixels per
                           class), the display bands, for later stages; ``scenes`` lists each
                           scene with its grid, labels, split rule and counts

Several scenes (:func:`tile_scene_set`) go into one such folder: chip ids start with the
scene's name, the index has a ``scene`` column, ``stats.json`` pools every scene's valid
pixels and ``classes.json`` is written once. The index is in the first scene's CRS (the
others' footprints reprojected); each chip keeps its own scene's CRS and grid.

Everything is validated before the first chip is written, and the folder is written under a
temporary name and renamed at the end, so a failed run never leaves a half-written output.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from geounet import __version__
from geounet._bands import parse_band_selection
from geounet._chip_index import (
    BUFFER_SPLIT,
    SPLIT_COLOURS,
    SPLITS,
    read_index,
    scene_entries,
    write_index,
    write_split_labels,
)
from geounet._files import staged_output, write_errors
from geounet._scene_set import (
    PreparedScene,
    SceneSource,
    check_scene_set,
    count_splits,
    scene_entry,
)
from geounet._stats import BandStatsAccumulator
from geounet.chips import INDEX_FILE, ChipsFolder
from geounet.classes import ClassMap, ClassScheme, no_negatives_message
from geounet.display import rgb_indexes
from geounet.errors import (
    ConfigError,
    EmptyChipError,
    LabelWarning,
    OutputError,
)
from geounet.grid import Chip, ChipGrid, EdgeMode
from geounet.labels import (
    RASTER_SUFFIXES,
    LabelOptions,
    class_map_from_raster,
    label_summary,
    load_labels,
)
from geounet.raster import (
    GDAL_ENV,
    ChipCodec,
    SceneInfo,
    open_scene,
    select_bands,
    write_chip,
)

log = logging.getLogger(__name__)

__all__ = [
    "BUFFER_SPLIT",
    "SPLITS",
    "SPLIT_COLOURS",
    "SceneSource",
    "TilingOptions",
    "TilingResult",
    "assign_splits",
    "read_index",
    "scene_entries",
    "tile_scene",
    "tile_scene_set",
    "write_split_labels",
]


@dataclass(frozen=True)
class TilingOptions:
    """How a scene is cut into chips.

    Attributes:
        chip_size: Chip height and width in pixels.
        stride: Step between chip starts in pixels (``<= chip_size``; smaller overlaps).
        edge: ``"shift"``: the last chip of a row/column is moved inward to end at the edge;
            ``"pad"``: it stays on the stride lattice and is padded with nodata.
        max_nodata_fraction: Chips with a larger fraction of nodata pixels are skipped.
        split_fractions: Fractions of spatial blocks for train, val and test.
        split_block_chips: Side of a spatial split block, in chips (1 = per-chip random split).
        seed: Seed of the block -> split draw.
        compress: Lossless codec of the chip GeoTIFFs.
        workers: Threads reading and writing chips (``None``: one per CPU).
        nodata: Override of the scene files' nodata: one value for every band or one per
            band (``None`` keeps a band's own); see :func:`geounet.raster.open_scene`.
        labels: Background of polygon labels and where the classes come from
            (:class:`geounet.labels.LabelOptions`).
        display_bands: Bands drawn as red, green, blue (names, 1-based indexes or a sensor
            preset, :func:`geounet.display.rgb_indexes`); ``None``: detected from the band
            names. Checked against the scene and kept in ``tiling.json`` for the plots.
        bands: The scene's bands to tile, in order: names or 1-based indexes
            (``"B02,B03,B04,B08"``, ``(2, 3, 4, 8)``); ``None``: every band. The chips, the
            statistics and the model trained on them have these bands only.
    """

    chip_size: int = 256
    stride: int | None = None
    edge: EdgeMode = "shift"
    max_nodata_fraction: float = 0.5
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_block_chips: int = 2
    seed: int = 0
    compress: ChipCodec = "zstd"
    workers: int | None = None
    nodata: float | tuple[float | None, ...] | None = None
    labels: LabelOptions = field(default_factory=LabelOptions)
    display_bands: str | tuple[str | int, ...] | None = None
    bands: str | tuple[str | int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", parse_band_selection(self.bands))
        if not 0.0 <= self.max_nodata_fraction <= 1.0:
            raise ConfigError(
                f"max_nodata_fraction must be in [0, 1], got {self.max_nodata_fraction}."
            )
        fr = self.split_fractions
        if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
            raise ConfigError(
                f"split_fractions (train, val, test) must be >= 0 and sum to 1, got {fr}."
            )
        if self.split_block_chips < 1:
            raise ConfigError(f"split_block_chips must be >= 1, got {self.split_block_chips}.")

    @property
    def effective_stride(self) -> int:
        """The stride, defaulting to the chip size (no overlap)."""
        return self.stride if self.stride is not None else self.chip_size


@dataclass(frozen=True)
class TilingResult:
    """What :func:`tile_scene` wrote: the folder and the chip counts per split."""

    out_dir: Path
    chips_total: int
    chips_written: int
    chips_skipped_nodata: int
    split_counts: dict[str, int]


def assign_splits(grid: ChipGrid, options: TilingOptions) -> dict[tuple[int, int], str]:
    """Assign each grid position to train/val/test by spatial blocks, with a buffer.

    Blocks of ``split_block_chips`` x ``split_block_chips`` chips are drawn into the splits
    with the seed. Chips that overlap (in pixels) a chip of another split would leak pixels
    between splits, so the one of the lower-priority split becomes ``"buffer"`` (test is kept
    over val, val over train).
    """
    rows, cols = grid.row_offsets, grid.col_offsets
    b = options.split_block_chips
    blocks = sorted({(i // b, j // b) for i in range(len(rows)) for j in range(len(cols))})
    rng = np.random.default_rng(options.seed)
    order = [blocks[k] for k in rng.permutation(len(blocks))]
    _, f_val, f_test = options.split_fractions
    n = len(order)
    n_test = max(1, round(n * f_test)) if f_test > 0 and n >= 3 else 0
    n_val = max(1, round(n * f_val)) if f_val > 0 and n >= 2 else 0
    n_test = min(n_test, max(n - n_val - 1, 0))
    block_split = {blk: "test" for blk in order[:n_test]}
    block_split |= {blk: "val" for blk in order[n_test : n_test + n_val]}
    block_split |= {blk: "train" for blk in order[n_test + n_val :]}
    split = {
        (i, j): block_split[(i // b, j // b)] for i in range(len(rows)) for j in range(len(cols))
    }

    ch, cw = grid.chip_size
    priority = {"train": 0, "val": 1, "test": 2}
    final = dict(split)
    # Chips overlap only neighbours less than a chip apart: at most ceil(chip / stride) grid
    # steps away (one more for the inward-shifted edge chip).
    reach_r = -(-ch // grid.stride[0]) + 1
    reach_c = -(-cw // grid.stride[1]) + 1
    for (i, j), s in split.items():
        for ii in range(max(i - reach_r, 0), min(i + reach_r + 1, len(rows))):
            if abs(rows[ii] - rows[i]) >= ch:
                continue
            for jj in range(max(j - reach_c, 0), min(j + reach_c + 1, len(cols))):
                if abs(cols[jj] - cols[j]) >= cw:
                    continue
                if priority[split[(ii, jj)]] > priority[s]:
                    final[(i, j)] = BUFFER_SPLIT
    return final


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder without ``overwrite``, before any chip is cut."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {out_dir} exists and is a file; give a folder path.")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputError(
            f"output folder {out_dir} is not empty; pass --overwrite to replace it or choose "
            "another --out."
        )


class _ChipWriter:
    """Reads, checks and writes one chip at a time; safe to call from several threads."""

    def __init__(
        self,
        prepared: PreparedScene,
        scheme: ClassScheme,
        options: TilingOptions,
        tmp_dir: Path,
    ) -> None:
        self.scene, self.grid, self.labels = prepared.scene, prepared.grid, prepared.labels
        self.name, self.scheme = prepared.name, scheme
        self.options, self.tmp_dir = options, tmp_dir
        self._local = threading.local()
        self.accumulators: list[BandStatsAccumulator] = []
        self._lock = threading.Lock()
        self.colormap = scheme.colormap()

    def _stats(self) -> BandStatsAccumulator:
        acc = getattr(self._local, "acc", None)
        if acc is None:
            acc = BandStatsAccumulator(self.scene.count, self.scene.dtype)
            self._local.acc = acc
            with self._lock:
                self.accumulators.append(acc)
        return acc

    def __call__(self, chip: Chip) -> dict[str, Any] | None:
        data, valid = self.scene.read_valid(chip.window, boundless=self.grid.edge == "pad")
        # Statistics from the chip's owned cell: owned cells tile the scene exactly once.
        own = self.grid.owned_window(chip)
        r0, c0 = own.row_off - chip.row_off, own.col_off - chip.col_off
        cell = (slice(r0, r0 + own.height), slice(c0, c0 + own.width))
        cell_valid = valid[cell]
        cell_data = data[:, cell[0], cell[1]]
        if cell_valid.all():  # the usual case: no boolean-index copy (a view for a full chip)
            self._stats().add(cell_data.reshape(cell_data.shape[0], -1))
        else:
            self._stats().add(cell_data[:, cell_valid])

        nodata_fraction = 1.0 - float(valid.mean())
        if nodata_fraction > self.options.max_nodata_fraction:
            return None
        chip_id = f"{self.name}_{chip.chip_id}"
        image_rel = f"images/{chip_id}.tif"
        if self.scene.masked:
            # One nodata value cannot say where such a scene is valid: the chip carries the
            # validity as its internal GDAL mask (values stay as read).
            data = np.ma.MaskedArray(data, mask=np.broadcast_to(~valid, data.shape))
        write_chip(
            self.tmp_dir / image_rel,
            data,
            crs=chip.crs,
            transform=chip.transform,
            nodata=self.scene.nodata,
            band_names=self.scene.bands,
            compress=self.options.compress,
        )
        record: dict[str, Any] = {
            "chip_id": chip_id,
            "scene": self.name,
            "image": image_rel,
            "row_off": chip.row_off,
            "col_off": chip.col_off,
            "height": chip.shape[0],
            "width": chip.shape[1],
            "nodata_fraction": round(nodata_fraction, 6),
            "bounds": chip.bounds,
        }
        if self.labels is not None:
            mask = self.labels.mask(chip)
            mask[~valid] = self.scheme.ignore_index
            label_rel = f"labels/{chip_id}.tif"
            write_chip(
                self.tmp_dir / label_rel,
                mask[np.newaxis],
                crs=chip.crs,
                transform=chip.transform,
                nodata=self.scheme.ignore_index,
                colormap=self.colormap,
                compress=self.options.compress,
            )
            counts = np.bincount(mask.ravel(), minlength=256)
            record["label"] = label_rel
            for c in self.scheme.classes:
                record[f"px_{c.name}"] = int(counts[c.id])
            record["px_ignore"] = int(counts[self.scheme.ignore_index])
        return record


def tile_scene(
    scene_paths: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    labels: str | Path | None = None,
    class_map: ClassMap | None = None,
    class_column: str | None = None,
    options: TilingOptions | None = None,
    overwrite: bool = False,
) -> TilingResult:
    """Cut a scene into chips (and label masks), writing the layout in the module docstring.

    Args:
        scene_paths: One multi-band raster, or several single-band files stacked in order.
        out_dir: Output folder (created; must be empty unless ``overwrite``).
        labels: Vector polygons or a class raster; ``None`` writes images only.
        class_map: Attribute value (or raster code) -> class mapping and scheme. ``None``: a
            class raster brings its own classes (:func:`geounet.labels.class_map_from_raster`,
            logged; ``options.labels.classes_from_labels=False`` reads its values as ids of
            the default scheme instead); polygons get the default scheme.
        class_column: Attribute column of vector labels (default: the class map's column).
        options: Chip size, stride, edge handling, split, codec, label background and
            display bands.
        overwrite: Replace an existing non-empty ``out_dir``.

    Returns:
        The folder and chip counts.

    Raises:
        GeounetError: Bad input (no CRS, unreadable file, missing class column, labels not on
            the scene, chip larger than the scene, output not writable, display bands the scene
            lacks, a class map together with ``classes_from_labels=True``), raised before any
            chip is written.
    """
    paths = scene_paths if isinstance(scene_paths, str | Path) else tuple(scene_paths)
    return tile_scene_set(
        [SceneSource(paths, labels=labels)],
        out_dir,
        class_map=class_map,
        class_column=class_column,
        options=options,
        overwrite=overwrite,
    )


def tile_scene_set(
    scenes: Sequence[SceneSource],
    out_dir: str | Path,
    *,
    class_map: ClassMap | None = None,
    class_column: str | None = None,
    options: TilingOptions | None = None,
    overwrite: bool = False,
) -> TilingResult:
    """Cut several scenes into ONE chips folder: one index, pooled statistics, one class scheme.

    Each scene is cut on its own grid (chips keep their scene's CRS and transform) and split
    by its :attr:`SceneSource.split`: a whole scene held out, or spatial blocks within it
    (scene ``k`` draws its blocks with ``options.seed + k``, so a one-scene set is exactly
    :func:`tile_scene`). ``stats.json`` holds the statistics of every scene's valid pixels
    together, which is what a model trained on all of them sees. Scenes whose footprints
    overlap are logged as a warning: the same ground could land in two splits.

    Args:
        scenes: The scenes, each with its labels (give every scene the same file for one
            labels file over all of them).
        out_dir: Output folder (created; must be empty unless ``overwrite``).
        class_map: Label value -> class mapping, the same for every scene (see
            :func:`tile_scene`); class rasters without one must bring the same classes.
        class_column: Attribute column of vector labels (default: the class map's column).
        options: Chip size, stride, edge handling, split fractions, codec, label options.
        overwrite: Replace an existing non-empty ``out_dir``.

    Returns:
        The folder and chip counts over all scenes.

    Raises:
        ConfigError: No scene, two scenes of one name, a scene with labels beside one
            without, or scenes whose class rasters bring different classes.
        BandMismatchError: Scenes with other band names or data types than the first.
        GridMismatchError: Scenes of another pixel size than the first.
        GeounetError: Any error of :func:`tile_scene` for one of the scenes. Everything is
            raised before any chip is written.
    """
    options = options or TilingOptions()
    out = Path(out_dir)
    if not scenes:
        raise ConfigError("no scene to tile; give at least one.")
    prepared: list[PreparedScene] = []
    schemes: list[ClassMap] = []
    for k, source in enumerate(scenes):
        scene = open_scene(source.paths, nodata=options.nodata)
        if options.bands is not None:  # a missing band fails here, before any work
            scene = select_bands(scene, options.bands)
        # A bad display_bands setting fails here, before any work.
        rgb_indexes(scene.bands, options.display_bands, scene_name=scene.name)
        grid = ChipGrid.from_scene(scene, options.chip_size, options.effective_stride, options.edge)
        resolved = _resolve_class_map(source.labels, scene, class_map, options.labels)
        label_source = (
            load_labels(source.labels, scene, resolved, column=class_column, options=options.labels)
            if source.labels is not None
            else None
        )
        name = source.name or scene.name
        prepared.append(
            PreparedScene(scene, grid, label_source, name, source.split, options.seed + k)
        )
        schemes.append(resolved)
    check_scene_set(prepared, schemes)
    _check_out_dir(out, overwrite)
    # The chips folder is one set: a failure (a full disk) or a kill leaves the old one whole.
    with staged_output(out) as tmp, write_errors(out):
        result = _write_chips(prepared, schemes[0].scheme, options, tmp)
        if not overwrite and out.is_dir() and any(out.iterdir()):
            raise OutputError(f"{out} was filled while tiling ran; nothing was replaced.")
    return TilingResult(out, *result)


def _resolve_class_map(
    labels: str | Path | None, scene: SceneInfo, class_map: ClassMap | None, opts: LabelOptions
) -> ClassMap:
    """The class map of a tiling: the given one, one taken from a class raster, or the default."""
    is_raster = labels is not None and Path(labels).suffix.lower() in RASTER_SUFFIXES
    if opts.classes_from_labels and not is_raster:
        raise ConfigError(
            f"classes_from_labels applies to class rasters; {labels} is not one. For polygons "
            "give a class map (docs/labels.md)."
        )
    if not is_raster:
        return class_map or ClassMap(ClassScheme.default())
    from_labels = opts.classes_from_labels
    if from_labels is None:  # the default: a class raster without a map brings its classes
        from_labels = class_map is None
    if from_labels and class_map is not None:
        raise ConfigError(
            f"both a class map and classes_from_labels: true were given for {labels}; drop one "
            "(the class map chooses the classes, classes_from_labels takes the raster's)."
        )
    if from_labels:
        return class_map_from_raster(Path(labels), scene)  # type: ignore[arg-type]
    if class_map is None:
        log.warning(
            "label raster %s: no class map and classes_from_labels is false, so its values are "
            "read as ids of the default classes %s (other values ignored).",
            labels,
            ClassScheme.default().names,
        )
        return ClassMap(ClassScheme.default())
    return class_map


def _class_pixels(records: list[dict[str, Any]], scheme: ClassScheme) -> dict[str, int]:
    """Labelled pixels per class over the written chips; warns when only one class has any."""
    pixels = {c.name: sum(int(r.get(f"px_{c.name}", 0)) for r in records) for c in scheme.classes}
    msg = no_negatives_message([name for name, n in pixels.items() if n > 0], "the chips")
    if msg is not None:
        log.warning(msg)
        warnings.warn(msg, LabelWarning, stacklevel=4)
    return pixels


def _write_chips(
    prepared: list[PreparedScene], scheme: ClassScheme, options: TilingOptions, tmp: Path
) -> tuple[int, int, int, dict[str, int]]:
    (tmp / "images").mkdir()
    if prepared[0].labels is not None:
        (tmp / "labels").mkdir()
    records: list[dict[str, Any]] = []
    accumulators: list[BandStatsAccumulator] = []
    entries: list[dict[str, Any]] = []
    grid_total = 0
    for p in prepared:
        scene_records, scene_accs = _write_scene_chips(p, scheme, options, tmp)
        records += scene_records
        accumulators += scene_accs
        grid_total += len(p.grid)
        entries.append(scene_entry(p, scene_records))
    first = prepared[0].scene
    if not records:
        names = ", ".join(p.scene.name for p in prepared)
        raise EmptyChipError(
            f"every chip of {names} has more than {options.max_nodata_fraction:.0%} nodata; "
            "raise --max-nodata or check the scene's nodata value."
        )
    stats = accumulators[0]
    for acc in accumulators[1:]:
        stats.merge(acc)
    folder = ChipsFolder(tmp)
    write_index(folder.file(INDEX_FILE), records, {p.name: p.scene.crs for p in prepared})
    split_counts = count_splits(records)
    skipped = grid_total - len(records)
    labels = [p.labels for p in prepared]
    meta = {
        "geounet_version": __version__,
        "scene": first.to_dict(),
        "res": list(first.res),
        "options": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()
        },
        "display_bands": [
            first.bands[i]
            for i in rgb_indexes(first.bands, options.display_bands, scene_name=first.name)
        ],
        "labels": (
            None
            if labels[0] is None
            else label_summary(labels[0])
            if len(labels) == 1
            else [label_summary(lab) for lab in labels if lab is not None]
        ),
        "chips": {"grid": grid_total, "written": len(records), "skipped_nodata": skipped},
        "splits": split_counts,
        "scenes": entries,
    }
    if labels[0] is not None:
        meta["class_pixels"] = _class_pixels(records, scheme)
    folder.write_documents(stats=stats.result(list(first.bands)), classes=scheme, tiling=meta)
    return grid_total, len(records), skipped, split_counts


def _write_scene_chips(
    prepared: PreparedScene, scheme: ClassScheme, options: TilingOptions, tmp: Path
) -> tuple[list[dict[str, Any]], list[BandStatsAccumulator]]:
    """Cut one scene of the set: its chip records (with their split) and statistics."""
    from tqdm.auto import tqdm

    scene, grid = prepared.scene, prepared.grid
    writer = _ChipWriter(prepared, scheme, options, tmp)
    if prepared.split is None:
        splits = assign_splits(grid, replace(options, seed=prepared.seed))
    else:  # a scene held out whole: no chip of it shares ground with another split
        splits = {(chip.grid_row, chip.grid_col): prepared.split for chip in grid}
    workers = options.workers or os.cpu_count() or 1
    chips = list(grid)
    records = []
    # The pool already keeps every core busy: a chip read touches a few blocks and a chip write
    # is small, so GDAL's own threads only add overhead (ALL_CPUS: +6 ms read and +14 ms write
    # CPU per 512 px 13-band chip on 2 cores). GDAL gets only the cores the pool leaves idle.
    gdal_threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**GDAL_ENV, "GDAL_NUM_THREADS": str(gdal_threads)}
    with rasterio.Env(**env), ThreadPoolExecutor(max_workers=workers) as pool:
        progress = tqdm(total=len(chips), unit="chip", desc=f"tiling {scene.name}", leave=False)
        for chip, record in zip(chips, pool.map(writer, chips), strict=True):
            progress.update()
            if record is not None:
                record["split"] = splits[(chip.grid_row, chip.grid_col)]
                records.append(record)
        progress.close()
    counts = count_splits(records)
    log.info(
        "%s: %d chips written (%d skipped as nodata); splits %s",
        prepared.name,
        len(records),
        len(chips) - len(records),
        counts,
    )
    return records, writer.accumulators
