"""Whole-scene prediction: reader threads -> batches -> model -> blend merger -> writer thread.

Chips are read in row-major order by a pool of reader threads (GDAL releases the GIL while it
decodes), batched through the model, blended by :class:`~geounet.stitching.BlendMerger` into
full-width strips, and the strips are written by a writer thread. Reading, compute and writing
therefore overlap, and peak memory is set by the chip size, the batch and one strip of rows,
never by the scene size.

Outputs in ``out_dir``:
    classes.tif       COG, uint8 class ids, scene CRS and transform bit-for-bit, palette with the
                      class colours, category names (``classes.tif.aux.xml``), 255 = nodata,
                      overviews (mode); ``classes.qml`` makes QGIS show named, coloured classes.
    probabilities.tif COG, uint8 0-255 per class (``round(p * 255)``), when asked for.
    preview.png       A small colour preview of the class map.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio

from geounet._bands import check_scene_bands
from geounet._files import staged_file, staged_output, write_errors, write_text_atomic
from geounet._nodata import nodata_rule_from_json
from geounet._qml import category_names_aux_xml, paletted_raster_qml
from geounet._resolution import check_scene_resolution
from geounet.classes import SCHEME_TAG, ClassScheme
from geounet.engines import ENGINES, Engine, EngineName, open_engine
from geounet.errors import ConfigError
from geounet.grid import Chip, ChipGrid
from geounet.raster import GDAL_ENV, SceneInfo, open_block_writer, open_scene, write_cog
from geounet.stitching import BlendMerger, MergedStrip, to_uint8_probabilities

log = logging.getLogger(__name__)

BlendName = Literal["gaussian", "cosine", "crop"]
ProgressCallback = Callable[[int, int], object]
"""``progress(chips_done, chips_total)``; raising in it cancels a prediction."""

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
        readers: Reader threads (GDAL decodes in parallel). ``None``: 2 on a CPU, where the
            model needs the cores, and one per core (at most 16) on a GPU, where decoding is
            the bottleneck.
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

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class ModelSpec:
    """What prediction needs to know about a model: bands, normalisation, classes, pixel size.

    ``res`` and ``crs`` (the training pixel size and CRS) are ``None`` when unknown; the
    resolution check is then skipped. ``recipe`` is the model file's input recipe
    (:class:`geounet.radiometry.InputRecipe`; ``None``: plain ``(DN - mean) / std``) and
    ``scene_offset`` the DN offset of the scene being predicted.
    """

    bands: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    scheme: ClassScheme
    chip_size: int = 256
    nodata: float | tuple[float | None, ...] | None = None
    res: tuple[float, float] | None = None
    crs: str | None = None
    recipe: Any = None
    scene_offset: float | None = None

    @classmethod
    def from_metadata(cls, metadata: Any) -> ModelSpec:
        """From a model file's metadata (an object with ``to_dict()`` or its dict form)."""
        data: Mapping[str, Any] = metadata.to_dict() if hasattr(metadata, "to_dict") else metadata
        try:
            norm = data["normalization"]
            return cls(
                bands=tuple(data["bands"]),
                mean=np.asarray(norm["mean"], dtype=np.float32),
                # A constant band (std 0) is divided by 1, as in training (data.Normalization).
                std=np.where(np.asarray(norm["std"]) == 0, 1.0, norm["std"]).astype(np.float32),
                scheme=ClassScheme.from_dict(data["classes"]),
                chip_size=int(data.get("chip_size") or 256),
                nodata=nodata_rule_from_json(data.get("nodata")),
                res=tuple(data["res"]) if data.get("res") else None,  # type: ignore[arg-type]
                crs=data.get("crs_hint"),
                recipe=_recipe(data),
            )
        except KeyError as exc:
            raise ConfigError(
                f"model metadata lacks {exc}; it needs bands, normalization (mean, std) "
                "and classes."
            ) from exc


def _recipe(data: Mapping[str, Any]) -> Any:
    """The metadata's input recipe, or ``None`` for the plain normalisation of older files."""
    if not data.get("input"):
        return None
    from geounet.data import Normalization  # noqa: PLC0415
    from geounet.radiometry import InputRecipe  # noqa: PLC0415

    norm = Normalization.from_dict(data["normalization"])
    return InputRecipe.from_dict(data["input"], data["bands"], norm)


@dataclass(frozen=True)
class PredictResult:
    """Paths written by :func:`predict_scene`."""

    classes: Path
    probabilities: Path | None
    preview: Path
    qml: Path


OUTPUT_NAMES = (
    "classes.tif", "classes.tif.aux.xml", "classes.qml", "probabilities.tif", "preview.png",
)  # fmt: skip
"""The files :func:`predict_scene` writes: published together, as one set (no mix of runs)."""


def predict_scene(
    model: Any,
    scene: str | Path | list[str | Path] | SceneInfo,
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
        scene: One raster, several single-band files, or an opened :class:`SceneInfo`.
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
    info = scene if isinstance(scene, SceneInfo) else open_scene(scene, nodata=nodata)
    check_scene_bands(spec.bands, info.bands, info.name)
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
    if options.readers is None:
        readers = 2 if engine.device_type == "cpu" else min(os.cpu_count() or 2, 16)
        options = dataclasses.replace(options, readers=readers)
    out = Path(out_dir)
    # Other files in `out` stay; an old probabilities.tif goes when this run writes none.
    # A failure, a kill or a cancelling `progress` callback leaves the previous set.
    with staged_output(out, owned=OUTPUT_NAMES) as work:
        (work / ".working").mkdir()
        with rasterio.Env(**GDAL_ENV), engine.session():
            _run(engine, spec, info, grid, options, work / ".working", progress)
            _publish(work / ".working", work, spec, options.probabilities)
        shutil.rmtree(work / ".working")
    probs = out / "probabilities.tif" if options.probabilities else None
    result = PredictResult(out / "classes.tif", probs, out / "preview.png", out / "classes.qml")
    log.info("predicted %s (%d chips) -> %s", info.name, len(grid), result.classes)
    return result


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
    if raw:  # the engine (an ONNX graph) applies the recipe, normalises and masks NaN itself
        x = data.astype(np.float32)
        if spec.recipe is not None and spec.scene_offset not in (None, spec.recipe.offset):
            # The graph adds the training scene's offset; this scene needs its own.
            x += np.float32(spec.scene_offset - spec.recipe.offset)
        x[:, ~valid] = np.nan
        return x, valid
    if spec.recipe is not None:  # harmonise, scale, index channels: exactly as in training
        return spec.recipe.apply(data, valid, offset=spec.scene_offset), valid
    # In place: one float32 copy per chip instead of three temporaries.
    x = data.astype(np.float32)
    x -= spec.mean[:, None, None]
    x /= spec.std[:, None, None]
    x[:, ~valid] = 0.0
    return x, valid


def _iter_batches(
    info: SceneInfo, spec: ModelSpec, grid: ChipGrid, options: PredictOptions, raw: bool
) -> Iterator[tuple[list[Chip], np.ndarray, list[np.ndarray]]]:
    """Batches of chips in row-major order, read ahead by a thread pool (bounded look-ahead)."""
    chips = list(grid)
    readers = options.readers or 2
    with ThreadPoolExecutor(max_workers=readers) as pool:
        pending: queue.SimpleQueue = queue.SimpleQueue()
        # Enough chips in flight for every reader to stay busy while a batch is consumed.
        ahead = max(2 * options.batch_size, readers + options.batch_size)
        submitted = 0
        for _ in range(min(ahead, len(chips))):
            pending.put(pool.submit(_read_chip, info, spec, chips[submitted], raw))
            submitted += 1
        for start in range(0, len(chips), options.batch_size):
            batch = chips[start : start + options.batch_size]
            xs, valids = [], []
            for _ in batch:
                x, v = pending.get().result()
                xs.append(x)
                valids.append(v)
                if submitted < len(chips):
                    pending.put(pool.submit(_read_chip, info, spec, chips[submitted], raw))
                    submitted += 1
            yield batch, np.stack(xs), valids


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
        self.queue: queue.Queue[MergedStrip | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="geounet-writer", daemon=True)
        self.thread.start()

    def put(self, strip: MergedStrip) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(strip)

    def _loop(self) -> None:
        try:
            while (strip := self.queue.get()) is not None:
                self._write(strip)
        except BaseException as exc:  # surfaced on the main thread by put()/close()
            self.error = exc
            while self.queue.get() is not None:
                pass

    def _write(self, strip: MergedStrip) -> None:
        values = strip.values
        probs, valid = values[:-1], values[-1] >= 0.5
        valid &= ~np.isnan(probs).any(axis=0)
        classes = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=0).astype(np.uint8)
        classes[~valid] = self.ignore
        self.classes.write(classes[np.newaxis], window=strip.window)
        if self.probs is not None:
            p8 = to_uint8_probabilities(np.nan_to_num(probs, nan=0.0))
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
    # The valid mask travels as one more channel: every chip gives a pixel the same 0/1, and
    # the merger returns equal values exactly, so blending cannot smear nodata.
    merger = BlendMerger(
        info.shape, k + 1, grid.chip_size, blend=options.blend,
        overlap=(grid.chip_size[0] - grid.stride[0], grid.chip_size[1] - grid.stride[1]),
    )  # fmt: skip
    writer = _StripWriter(info, spec, work, options.probabilities)
    progress = tqdm(total=len(grid), unit="chip", desc=f"predicting {info.name}", leave=False)

    def merge(chips: list[Chip], probs: np.ndarray, valids: list[np.ndarray]) -> None:
        h, w = info.shape
        for chip, p, v in zip(chips, probs, valids, strict=True):
            stacked = np.concatenate([p, v[np.newaxis].astype(np.float32)])
            # Padded chips (scene smaller than a chip) are cropped back to the scene.
            ch = min(chip.shape[0], h - chip.row_off)
            cw = min(chip.shape[1], w - chip.col_off)
            window = rasterio.windows.Window(chip.col_off, chip.row_off, cw, ch)
            for strip in merger.add(stacked[:, :ch, :cw], window):
                writer.put(strip)
        progress.update(len(chips))
        if callback is not None:
            callback(progress.n, len(grid))

    # On a GPU, batch i is blended on a merge thread while the model runs batch i + 1 (numpy
    # and torch release the GIL), so the merge does not hold the GPU up. One batch at most
    # waits, and batches are merged in order: the output is the same as merging inline. On a
    # CPU the model already uses every core, and a merge thread measured no faster.
    pipelined = engine.device_type in _MERGE_THREAD_DEVICES
    merging: Future[None] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geounet-merge") as pool:
            for chips, x, valids in _iter_batches(info, spec, grid, options, engine.raw_input):
                probs = engine(x)
                if probs.shape[1] != k:
                    raise ConfigError(
                        f"the model returns {probs.shape[1]} channels but the class scheme has "
                        f"{k} classes {spec.scheme.names}."
                    )
                if merging is not None:
                    merging.result()
                if pipelined:
                    merging = pool.submit(merge, chips, probs, valids)
                else:
                    merge(chips, probs, valids)
            if merging is not None:
                merging.result()
        for strip in merger.finalize():
            writer.put(strip)
    finally:
        progress.close()
        writer.close()


def _publish(work: Path, out: Path, spec: ModelSpec, probabilities: bool) -> None:
    """Turn the working files into checked COGs, sidecars and a preview in ``out``."""
    write_cog(work / "classes.tif", out / "classes.tif", resampling="mode")
    write_text_atomic(out / "classes.tif.aux.xml", category_names_aux_xml(spec.scheme))
    write_text_atomic(out / "classes.qml", paletted_raster_qml(spec.scheme))
    if probabilities:
        write_cog(work / "probabilities.tif", out / "probabilities.tif", resampling="average")
    write_preview(out / "classes.tif", out / "preview.png", spec.scheme)


def write_preview(
    classes_path: Path, png_path: Path, scheme: ClassScheme, max_side: int = 1024
) -> None:
    """A small RGBA PNG of a class raster (read from its overviews, nodata transparent)."""
    from PIL import Image

    with rasterio.open(classes_path) as src:
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
