"""Whole-scene prediction: reader thread -> batches -> model -> blend merger -> writer thread.

A reader thread reads the scene in strips of rows, each row once (GDAL releases the GIL while
it decodes), cuts the chips in row-major order from them and batches them; the batches go
through the model, are blended by :class:`~geounet.stitching.BlendMerger` into full-width
strips, and the strips are written by a writer thread. Reading, compute and writing therefore
overlap, and peak memory is set by the chip size, the batch and one strip of rows, never by
the scene size.

Outputs in ``out_dir``:
    classes.tif       COG, uint8 class ids, scene CRS and transform bit-for-bit, palette with the
                      class colours, category names (``classes.tif.aux.xml``), 255 = nodata,
                      overviews (mode); ``classes.qml`` makes QGIS show named, coloured classes.
    probabilities.tif COG, uint8 0-255 per class (``round(p * 255)``; GDAL scale 1/255, offset 0,
                      band descriptions ``p_<class>``, nodata as the internal mask, since every
                      value 0-255 is a probability), when asked for; ``probabilities.qml``
                      shows one class's probability as a colour ramp.
    preview.png       A small colour preview of the class map.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rasterio

from geounet._bands import match_scene_bands, parse_band_selection
from geounet._files import staged_file, staged_output, write_errors, write_text_atomic
from geounet._model_spec import ModelSpec
from geounet._qml import category_names_aux_xml, paletted_raster_qml, probability_ramp_qml
from geounet._resolution import check_scene_resolution
from geounet.classes import SCHEME_TAG, ClassScheme
from geounet.engines import ENGINES, Engine, EngineName, open_engine
from geounet.errors import ConfigError
from geounet.grid import Chip, ChipGrid
from geounet.raster import (
    GDAL_ENV,
    SceneInfo,
    open_block_writer,
    open_raster,
    open_scene,
    select_bands,
    take_bands,
    write_cog,
)
from geounet.stitching import BlendMerger, MergedStrip, to_uint8_probabilities

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)

BlendName = Literal["gaussian", "cosine", "crop"]
ProgressCallback = Callable[[int, int], object]
"""``progress(chips_done, chips_total)``; raising in it cancels a prediction."""

PROBABILITY_SCALE = 1 / 255
"""GDAL scale of probabilities.tif: a stored uint8 ``q`` is the probability ``q / 255``."""

_MERGE_THREAD_DEVICES = {"cuda"}
"""Devices whose predict blends batch i on a thread while the model runs batch i + 1."""


@dataclass(frozen=True)
class PredictOptions:
    """How a scene is predicted.

    Attributes:
        chip_size: Chip side in pixels (``None``: the model file's training chip size).
        overlap: Pixels shared by neighbouring chips (``None``: a quarter of the chip).
        batch_size: Chips per forward pass.
        blend: Weight window blending overlapping chips: ``gaussian``, ``cosine`` or ``crop``.
        tta: Average the 8 flips/rotations (8x the compute).
        probabilities: Also write ``probabilities.tif``.
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        readers: Threads cutting and normalising chips from the strips of rows the reader
            thread reads (GDAL decodes each strip with its own threads). ``None``: 1 on a
            CPU, where the model needs the cores, and one per core (at most 16) on a GPU,
            where decoding is the bottleneck (see :func:`cpu_thread_plan`).
        compile: ``torch.compile`` the model first (GPU; pays off on large scenes). The last,
            partial batch is padded to ``batch_size`` so the compiled model sees one shape.
        nodata: Override of the scene files' nodata (one value, or one per band); ``None``:
            the model file's rule (the override its training scene was tiled with, if any).
        allow_resolution_mismatch: Predict a scene whose pixels differ from the model's
            training pixels by more than 1.5x (see :mod:`geounet._resolution`); refused by
            default.
        engine: What runs the model: ``torch``, ``onnx`` (onnxruntime, an exported ``.onnx``
            file) or ``auto`` (by the model file's suffix); see :mod:`geounet.engines`.
        dn_offset: DN added to this scene to harmonise it for a model with an input recipe
            (-1000 for a Sentinel-2 product of baseline >= 04.00); ``None``: from the scene's
            product metadata, else the training scene's convention. Ignored by recipe-less
            models.
        bands: The scene's bands to predict, in order: names or 1-based indexes
            (``"B02,B03,B04,B08"``, ``(2, 3, 4, 8)``); ``None``: the model's bands picked by
            name when the scene has them all (in any order), else the scene's bands as they are.
    """

    chip_size: int | None = None
    overlap: int | None = None
    batch_size: int = 4
    blend: BlendName = "gaussian"
    tta: bool = False
    probabilities: bool = False
    device: str = "auto"
    readers: int | None = None
    compile: bool = False
    nodata: float | tuple[float | None, ...] | None = None
    allow_resolution_mismatch: bool = False
    engine: EngineName = "auto"
    dn_offset: float | None = None
    bands: str | tuple[str | int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", parse_band_selection(self.bands))
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.chip_size is not None and self.chip_size < 8:
            raise ConfigError(f"chip_size must be >= 8, got {self.chip_size}.")
        if self.overlap is not None and self.overlap < 0:
            raise ConfigError(f"overlap must be >= 0, got {self.overlap}.")
        if self.readers is not None and self.readers < 1:
            raise ConfigError(f"readers must be >= 1 or None (automatic), got {self.readers}.")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}.")


def scene_for_model(
    info: SceneInfo, model_bands: tuple[str, ...], bands: str | tuple[str | int, ...] | None
) -> SceneInfo:
    """The scene's bands the model reads: the ``bands`` selection, then the model's by name.

    Raises:
        BandMismatchError: A selected band the scene lacks, or bands that differ from the
            model's (see :func:`geounet._bands.match_scene_bands`); before any pixel is read.
    """
    if bands is not None:
        info = select_bands(info, bands)
    positions = match_scene_bands(model_bands, info.bands, info.name)
    return info if positions is None else take_bands(info, positions)


@dataclass(frozen=True)
class PredictResult:
    """Paths written by :func:`predict_scene`."""

    classes: Path
    probabilities: Path | None
    preview: Path
    qml: Path


OUTPUT_NAMES = (
    "classes.tif", "classes.tif.aux.xml", "classes.qml", "probabilities.tif",
    "probabilities.qml", "preview.png",
)  # fmt: skip
"""The files :func:`predict_scene` writes: published together, as one set (no mix of runs)."""


def predict_scene(
    model: Any,
    scene: str | Path | Sequence[str | Path] | SceneInfo | xr.DataArray,
    out_dir: str | Path,
    *,
    metadata: Any = None,
    options: PredictOptions | None = None,
    progress: ProgressCallback | None = None,
    **option_fields: Any,
) -> PredictResult:
    """Predict a whole scene tile by tile and write the merged class map (and probabilities).

    Args:
        model: A model file path (``.safetensors``, or ``.onnx`` from ``geounet export``, run by
            onnxruntime without torch), or a ``torch.nn.Module`` mapping ``(B, C, H, W)``
            normalised float32 to ``(B, K, H, W)`` logits (then ``metadata`` is required).
        scene: One raster, several single-band files (local, ``/vsizip/``, ``/vsicurl/``,
            ``s3://``... paths), a Sentinel-2 SAFE folder or zip or a STAC Item (the model's
            bands are picked from it by name), a georeferenced ``xarray.DataArray`` (rioxarray
            ``rio`` accessor; :mod:`geounet.xarray`) or an opened :class:`SceneInfo`.
        out_dir: Output folder (created). The outputs (:data:`OUTPUT_NAMES`) are written in a
            hidden work folder beside it and swapped in as one set once all are complete and
            checked: earlier outputs stay until then, and never mix with the new ones. Other
            files in ``out_dir`` are kept.
        metadata: Bands, normalisation and classes of an ``nn.Module`` (a :class:`ModelSpec`,
            a model file's metadata, or its dict form).
        options: Chip size, overlap, batch, blend, TTA, probabilities, device, engine.
        **option_fields: The same as keywords (``chip_size=512, tta=True``), instead of
            ``options``.
        progress: Called as ``progress(chips_done, chips_total)`` after each batch (e.g. a
            QGIS feedback). An exception raised in it cancels the prediction: nothing is
            published and the working files are removed.

    Returns:
        The written paths. ``classes.tif`` has the scene's CRS and transform exactly.

    Raises:
        GeounetError: Bad input (bands differ from the model's, no CRS, output not writable),
            raised before any compute.
        ResolutionMismatchError: The scene's pixels are more than 1.5x larger or smaller on
            the ground than the model's (unless ``allow_resolution_mismatch``).
        RasterReadError: The scene is truncated or corrupt (found when its pixels are read).
        DiskFullError: The disk filled while writing; the earlier outputs are kept.
    """
    if options is not None and option_fields:
        raise ConfigError("give either options=PredictOptions(...) or option keywords, not both.")
    try:
        options = options or PredictOptions(**option_fields)
    except TypeError as exc:
        raise ConfigError(
            f"{exc}; valid options: {list(PredictOptions.__dataclass_fields__)}."
        ) from exc
    engine, spec = open_engine(model, metadata, options)
    # The training scene's nodata rule, unless this scene is given its own.
    nodata = options.nodata if options.nodata is not None else spec.nodata
    info = scene if isinstance(scene, SceneInfo) else _open_input(scene, spec.bands, nodata)
    info = scene_for_model(info, spec.bands, options.bands)
    check_scene_resolution(spec.res, spec.crs, info, allow=options.allow_resolution_mismatch)
    if spec.recipe is not None:
        from geounet.radiometry import resolve_offset  # noqa: PLC0415

        offset = resolve_offset(options.dn_offset, info.paths, default=spec.recipe.offset)
        spec = dataclasses.replace(spec, scene_offset=offset)
        if spec.recipe.normalize == "scene":
            spec = _scene_normalized(spec, info, engine.raw_input)
    chip = options.chip_size or spec.chip_size
    overlap = options.overlap if options.overlap is not None else chip // 4
    if overlap >= chip:
        raise ConfigError(f"overlap {overlap} must be smaller than the chip size {chip}.")
    edge = "pad" if min(info.shape) < chip else "shift"
    grid = ChipGrid.from_scene(info, chip, chip - overlap, edge)
    threads = cpu_thread_plan(engine.device_type)
    if options.readers is None:
        options = dataclasses.replace(options, readers=threads["readers"])
    # GDAL (decoding the scene, compressing the working files) gets the cores torch leaves.
    env = {**GDAL_ENV, "GDAL_NUM_THREADS": str(threads["gdal"])}
    out = Path(out_dir)
    # Other files in `out` stay; an old probabilities.tif goes when this run writes none.
    # A failure, a kill or a cancelling `progress` callback leaves the previous set.
    with staged_output(out, owned=OUTPUT_NAMES) as work:
        (work / ".working").mkdir()
        with rasterio.Env(**env), engine.session():
            _run(engine, spec, info, grid, options, work / ".working", progress)
            _publish(work / ".working", work, spec, options.probabilities)
        shutil.rmtree(work / ".working")
    probs = out / "probabilities.tif" if options.probabilities else None
    result = PredictResult(out / "classes.tif", probs, out / "preview.png", out / "classes.qml")
    log.info("predicted %s (%d chips) -> %s", info.name, len(grid), result.classes)
    return result


def _open_input(scene: Any, bands: tuple[str, ...], nodata: Any) -> SceneInfo:
    """Open a scene argument: paths, a SAFE/STAC (the model's bands picked) or a DataArray."""
    from geounet._scene_inputs import is_container

    if _is_data_array(scene):
        from geounet.xarray import scene_from_data_array

        return scene_from_data_array(scene, nodata=nodata)
    if isinstance(scene, str | Path) and is_container(scene):
        return open_scene(scene, nodata=nodata, select=bands)
    return open_scene(scene, nodata=nodata)


def _is_data_array(value: object) -> bool:
    # By class name: xarray is imported only when a DataArray is actually passed.
    return any(c.__name__ == "DataArray" for c in type(value).__mro__)


def cpu_thread_plan(device_type: str = "cpu") -> dict[str, int]:
    """How predict shares the cores between torch and GDAL (and how many reader threads).

    On a CPU the forward pass is the work and it already uses every core torch is given, so
    GDAL decodes (and compresses the working files) with the cores torch leaves free, at least
    one, and one reader thread reads each scene strip once and prepares the chips: more threads
    there only took cores from the model (on 2 cores the end-to-end time swung from 1.2x to 2x
    the model's with that contention). On a GPU decoding is the bottleneck: every core decodes.

    Args:
        device_type: ``cpu`` or ``cuda``.

    Returns:
        ``{"torch": intra-op threads, "gdal": GDAL_NUM_THREADS, "readers": reader threads}``.
    """
    cores = _cores()
    if device_type != "cpu":
        return {"torch": 0, "gdal": cores, "readers": min(cores, 16)}
    # The ONNX engine runs without torch; onnxruntime's threads default to the cores too.
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else cores
    return {"torch": torch_threads, "gdal": max(1, cores - torch_threads), "readers": 1}


def _cores() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _scene_normalized(spec: ModelSpec, info: SceneInfo, raw_input: bool) -> ModelSpec:
    """The spec of a ``normalize: scene`` model with this scene's own band statistics."""
    from geounet.radiometry import scene_normalization  # noqa: PLC0415

    if raw_input:
        raise ConfigError(
            f"{info.name}: this model normalises each scene with its own statistics "
            "(normalize: scene), which an exported ONNX graph cannot; predict with --engine torch."
        )
    recipe = spec.recipe.for_scene(scene_normalization(info), spec.scene_offset)
    log.info("%s: normalised with its own band statistics (normalize: scene)", info.name)
    return dataclasses.replace(spec, recipe=recipe)


def _read_chip(
    info: SceneInfo, spec: ModelSpec, chip: Chip, raw: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A normalised float32 chip (0 at nodata) and its valid mask; ``raw``: NaN at nodata."""
    data, valid = info.read_valid(chip.window, boundless=True)
    return _prepare_chip(spec, data, valid, raw), valid


def _prepare_chip(spec: ModelSpec, data: np.ndarray, valid: np.ndarray, raw: bool) -> np.ndarray:
    """Chip values as the engine takes them: normalised float32 (0 at nodata), or raw (NaN)."""
    if raw:  # the engine (an ONNX graph) applies the recipe, normalises and masks NaN itself
        x = data.astype(np.float32)
        if spec.recipe is not None and spec.scene_offset not in (None, spec.recipe.offset):
            # The graph adds the training scene's offset; this scene needs its own.
            x += np.float32(spec.scene_offset - spec.recipe.offset)
        x[:, ~valid] = np.nan
        return x
    if spec.recipe is not None:  # harmonise, scale, index channels: exactly as in training
        return spec.recipe.apply(data, valid, offset=spec.scene_offset)
    # In place: one float32 copy per chip instead of three temporaries.
    x = data.astype(np.float32)
    x -= spec.mean[:, None, None]
    x /= spec.std[:, None, None]
    x[:, ~valid] = 0.0
    return x


@dataclass(frozen=True)
class _ValidRows:
    """The scene's valid mask of rows ``[row_off, row_off + len(values))``, full width."""

    row_off: int
    values: np.ndarray


_Batch = tuple[list[Chip], np.ndarray, list[np.ndarray], list[_ValidRows]]


def _chip_rows(chips: Iterable[Chip]) -> list[list[Chip]]:
    """Chips grouped by ``row_off``, in the (row-major) order given."""
    rows: list[list[Chip]] = []
    for chip in chips:
        if rows and rows[-1][0].row_off == chip.row_off:
            rows[-1].append(chip)
        else:
            rows.append([chip])
    return rows


def _in_thread(make: Callable[[], Iterator[Any]], name: str, depth: int) -> Iterator[Any]:
    """Run the iterator ``make()`` on a thread, ``depth`` items ahead of the consumer.

    An exception in it is raised in the consumer; closing this generator stops the thread.
    """
    out: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            items = make()
            try:
                for item in items:
                    if not put((True, item)):
                        return
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            put((False, None))
        except BaseException as exc:  # surfaced on the consuming thread
            put((False, exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            more, item = out.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


_Strip = tuple[list[Chip], np.ndarray, np.ndarray, _ValidRows]


def _strips(info: SceneInfo, chips: Iterable[Chip]) -> Iterator[_Strip]:
    """Per row of chips: its chips, the strip of rows they cover (values, valid mask), new rows.

    Only the rows the previous strip did not hold are read (the full width, one request);
    the rows shared with it are copied over.
    """
    strip: np.ndarray | None = None
    strip_valid: np.ndarray | None = None
    strip_row = read_end = 0
    h, w = info.shape
    for row in _chip_rows(chips):
        top = row[0].row_off
        height = max(c.shape[0] for c in row)
        width = max(w, max(c.col_off + c.shape[1] for c in row))
        start = max(top, read_end)
        window = rasterio.windows.Window(0, start, width, top + height - start)
        data, valid = info.read_valid(window, boundless=True)
        if strip is not None and strip_valid is not None and start > top:
            keep = slice(top - strip_row, start - strip_row)
            data = np.concatenate([strip[:, keep], data], axis=1)
            valid = np.concatenate([strip_valid[keep], valid], axis=0)
        new_rows = _ValidRows(start, valid[start - top : min(h, top + height) - top, :w])
        strip, strip_valid, strip_row, read_end = data, valid, top, top + height
        yield row, data, valid, new_rows


def _batches_from_strips(
    strips: Iterator[_Strip], spec: ModelSpec, options: PredictOptions, raw: bool
) -> Iterator[_Batch]:
    """Cut and normalise the chips of each strip (``options.readers`` threads) into batches."""
    readers = options.readers or 1
    pool = ThreadPoolExecutor(readers, "geounet-read-chip") if readers > 1 else None
    try:
        pending: tuple[list[Chip], list[np.ndarray], list[np.ndarray], list[_ValidRows]]
        pending = ([], [], [], [])
        for row, data, valid, new_rows in strips:
            pending[3].append(new_rows)

            def cut(
                chip: Chip, d: np.ndarray = data, v: np.ndarray = valid
            ) -> tuple[np.ndarray, np.ndarray]:
                cols = slice(chip.col_off, chip.col_off + chip.shape[1])
                cv = v[: chip.shape[0], cols]
                return _prepare_chip(spec, d[:, : chip.shape[0], cols], cv, raw), cv

            cut_chips = pool.map(cut, row) if pool is not None else map(cut, row)
            for chip, (x, v) in zip(row, cut_chips, strict=True):
                pending[0].append(chip)
                pending[1].append(x)
                pending[2].append(v)
                if len(pending[0]) == options.batch_size:
                    yield pending[0], np.stack(pending[1]), pending[2], pending[3]
                    pending = ([], [], [], [])
        if pending[0]:
            yield pending[0], np.stack(pending[1]), pending[2], pending[3]
    finally:
        if pool is not None:
            pool.shutdown()
        close = getattr(strips, "close", None)
        if close is not None:  # stop the strip thread now, not when garbage collected
            close()


def _iter_strip_batches(
    info: SceneInfo,
    spec: ModelSpec,
    chips: Iterable[Chip],
    options: PredictOptions,
    raw: bool = False,
) -> Iterator[_Batch]:
    """Batches of chips cut from strips of rows, each scene row read and decoded once.

    Neighbouring chips overlap, so reading chip windows decoded 1.78x the scene's pixels (at a
    quarter overlap) through one GDAL handle per thread. Here one thread reads the rows of
    each row of chips that the previous one did not (the full width, one request: GDAL
    decodes its blocks with its own threads) while another cuts the chips of the strip before
    from memory and batches them; the values are the same as a read of each chip's window.
    Memory: a few strips of a chip's height by the scene width, and the batches in the queue.

    Yields:
        ``(chips, x, valids, rows)``: the batch's chips, their stacked engine input, their
        valid masks, and the scene valid rows read since the previous batch (see
        :class:`_ValidRows`), clipped to the scene.
    """

    def batches() -> Iterator[_Batch]:
        strips = _in_thread(lambda: _strips(info, chips), "geounet-read-strip", 1)
        return _batches_from_strips(strips, spec, options, raw)

    return _in_thread(batches, "geounet-read", 2)


def _iter_batches(
    info: SceneInfo,
    spec: ModelSpec,
    grid: Iterable[Chip],
    options: PredictOptions,
    raw: bool = False,
) -> Iterator[tuple[list[Chip], np.ndarray, list[np.ndarray]]]:
    """Batches ``(chips, x, valids)`` of chips in row-major order, read ahead by a thread."""
    for chips, x, valids, _ in _iter_strip_batches(info, spec, grid, options, raw):
        yield chips, x, valids


def _next_batch(batches: Iterator[_Batch]) -> _Batch | None:
    """The next batch, or ``None`` at the end (a function so that a bench can time the wait)."""
    return next(batches, None)


class _ValidMask:
    """The scene's valid rows from the reader, until the merged strips that need them go out."""

    def __init__(self) -> None:
        self._rows: list[_ValidRows] = []

    def add(self, rows: list[_ValidRows]) -> None:
        self._rows += [r for r in rows if len(r.values)]

    def take(self, window: rasterio.windows.Window) -> np.ndarray:
        """``(window.height, scene width)`` bool of the strip ``window``; drops rows above it."""
        top, bottom = int(window.row_off), int(window.row_off + window.height)
        parts = []
        for r in self._rows:
            end = r.row_off + len(r.values)
            if end > top and r.row_off < bottom:
                parts.append(r.values[max(top - r.row_off, 0) : bottom - r.row_off])
        self._rows = [r for r in self._rows if r.row_off + len(r.values) > bottom]
        mask = np.concatenate(parts) if len(parts) != 1 else parts[0].copy()
        if mask.shape[0] != bottom - top:  # every predicted row was read; a bug otherwise
            raise RuntimeError(f"valid rows of {window} missing ({mask.shape[0]} rows held).")
        return mask


class _StripWriter:
    """Writes merged strips on a background thread: argmax, nodata, uint8 probabilities."""

    def __init__(self, info: SceneInfo, spec: ModelSpec, work: Path, probabilities: bool) -> None:
        k = spec.scheme.num_classes
        self.ignore = spec.scheme.ignore_index
        self.classes = open_block_writer(
            work / "classes.tif", like=info, count=1, dtype="uint8", nodata=self.ignore,
            colormap=spec.scheme.colormap(),
        )  # fmt: skip
        self.classes.update_tags(**{SCHEME_TAG: json.dumps(spec.scheme.to_dict())})
        self.probs = (
            open_block_writer(work / "probabilities.tif", like=info, count=k, dtype="uint8")
            if probabilities
            else None
        )
        if self.probs is not None:
            for i, c in enumerate(spec.scheme.classes, start=1):
                self.probs.set_band_description(i, f"p_{c.name}")
            with self.probs.errors():  # value * 1/255 = p (GDAL, QGIS and rioxarray apply it)
                self.probs.dataset.scales = (PROBABILITY_SCALE,) * k  # type: ignore[union-attr]
                self.probs.dataset.offsets = (0.0,) * k  # type: ignore[union-attr]
        self.queue: queue.Queue[tuple[MergedStrip, np.ndarray] | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="geounet-writer", daemon=True)
        self.thread.start()

    def put(self, strip: MergedStrip, valid: np.ndarray) -> None:
        """Queue a merged strip of class probabilities and the scene's valid mask of its rows."""
        if self.error is not None:
            raise self.error
        self.queue.put((strip, valid))

    def _loop(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                self._write(*item)
        except BaseException as exc:  # surfaced on the main thread by put()/close()
            self.error = exc
            while self.queue.get() is not None:
                pass

    def _write(self, strip: MergedStrip, valid: np.ndarray) -> None:
        probs = strip.values
        # Pixels no chip covered are NaN (and invalid).
        nan = np.isnan(probs).any(axis=0)
        valid &= ~nan
        if nan.any():
            probs = np.nan_to_num(probs, nan=-1.0)
        classes = np.argmax(probs, axis=0).astype(np.uint8)
        classes[~valid] = self.ignore
        self.classes.write(classes[np.newaxis], window=strip.window)
        if self.probs is not None:
            p8 = to_uint8_probabilities(probs)  # -1 (no chip) clips to 0, as NaN did
            p8[:, ~valid] = 0
            self.probs.write(p8, window=strip.window)
            # 0 is a probability, so nodata is said by the file's internal mask (what GDAL and
            # QGIS read as nodata), which the COG copy keeps.
            self.probs.write_mask(valid, window=strip.window)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.classes.close()
        if self.probs is not None:
            self.probs.close()
        if self.error is not None:
            raise self.error


def _run(
    engine: Engine,
    spec: ModelSpec,
    info: SceneInfo,
    grid: ChipGrid,
    options: PredictOptions,
    work: Path,
    callback: ProgressCallback | None = None,
) -> None:
    from tqdm.auto import tqdm

    k = spec.scheme.num_classes
    # Only the classes are blended: the valid mask comes from the reader, row by row (every
    # chip gives a pixel the same validity, so blending it as one more channel, as before,
    # returned the same 0/1 at a fifth more blending work).
    merger = BlendMerger(
        info.shape, k, grid.chip_size, blend=options.blend,
        overlap=(grid.chip_size[0] - grid.stride[0], grid.chip_size[1] - grid.stride[1]),
    )  # fmt: skip
    valid_rows = _ValidMask()
    writer = _StripWriter(info, spec, work, options.probabilities)
    progress = tqdm(total=len(grid), unit="chip", desc=f"predicting {info.name}", leave=False)

    def merge(chips: list[Chip], probs: np.ndarray) -> None:
        h, w = info.shape
        for chip, p in zip(chips, probs, strict=True):
            # Padded chips (scene smaller than a chip) are cropped back to the scene: a view.
            ch = min(chip.shape[0], h - chip.row_off)
            cw = min(chip.shape[1], w - chip.col_off)
            window = rasterio.windows.Window(chip.col_off, chip.row_off, cw, ch)
            for strip in merger.add(p[:, :ch, :cw], window):
                writer.put(strip, valid_rows.take(strip.window))
        progress.update(len(chips))
        if callback is not None:
            callback(progress.n, len(grid))

    # On a GPU, batch i is blended on a merge thread while the model runs batch i + 1 (numpy
    # and torch release the GIL), so the merge does not hold the GPU up. One batch at most
    # waits, and batches are merged in order: the output is the same as merging inline. On a
    # CPU the model already uses every core, and a merge thread measured no faster.
    pipelined = engine.device_type in _MERGE_THREAD_DEVICES
    merging: Future[None] | None = None
    batches = _iter_strip_batches(info, spec, grid, options, engine.raw_input)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geounet-merge") as pool:
            while (batch := _next_batch(batches)) is not None:
                chips, x, _, rows = batch
                probs = engine(x)
                if probs.shape[1] != k:
                    raise ConfigError(
                        f"the model returns {probs.shape[1]} channels but the class scheme has "
                        f"{k} classes {spec.scheme.names}."
                    )
                if merging is not None:
                    merging.result()
                valid_rows.add(rows)  # after the last merge: it only appends rows below
                if pipelined:
                    merging = pool.submit(merge, chips, probs)
                else:
                    merge(chips, probs)
            if merging is not None:
                merging.result()
        for strip in merger.finalize():
            writer.put(strip, valid_rows.take(strip.window))
    finally:
        batches.close()
        progress.close()
        writer.close()


def _publish(work: Path, out: Path, spec: ModelSpec, probabilities: bool) -> None:
    """Turn the working files into checked COGs, sidecars and a preview in ``out``."""
    write_cog(work / "classes.tif", out / "classes.tif", resampling="mode")
    write_text_atomic(out / "classes.tif.aux.xml", category_names_aux_xml(spec.scheme))
    write_text_atomic(out / "classes.qml", paletted_raster_qml(spec.scheme))
    if probabilities:
        write_cog(work / "probabilities.tif", out / "probabilities.tif", resampling="average")
        write_text_atomic(out / "probabilities.qml", probability_ramp_qml(spec.scheme))
    write_preview(out / "classes.tif", out / "preview.png", spec.scheme)


def write_preview(
    classes_path: Path, png_path: Path, scheme: ClassScheme, max_side: int = 1024
) -> None:
    """A small RGBA PNG of a class raster (read from its overviews, nodata transparent)."""
    from PIL import Image

    with open_raster(classes_path) as src:
        scale = max(src.width, src.height) / max_side
        shape = (
            (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
            if scale > 1
            else (src.height, src.width)
        )
        data = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.mode)
    lut = np.zeros((256, 4), dtype=np.uint8)
    for value, rgba in scheme.colormap().items():
        lut[value] = rgba
    with staged_file(png_path) as tmp, write_errors(png_path):
        Image.fromarray(lut[data], mode="RGBA").save(tmp, format="PNG")
