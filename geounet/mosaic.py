"""One seamless map from a huge mosaic: output blocks predicted as dask tasks, then assembled.

:func:`predict_mosaic` cuts the output grid of one large raster (a VRT or COG, or several
overlapping scenes put on one grid by :func:`~geounet._mosaic_vrt.mosaic_vrt`) into square
blocks. Each block is one dask.distributed task that writes the block's class raster (and
probabilities) as COGs; a last task lays a VRT over them and assembles one ``classes.tif``
window by window. Output layout::

    OUT/blocks/<block-id>/   classes.tif, classes.tif.aux.xml, classes.qml, preview.png,
                             item.json (and probabilities.tif): one block, as predict_scene
                             would write it for that window of the map
    OUT/blocks/<block-id>.json   the block's record: written last, read by a rerun (resume)
    OUT/classes.vrt          the blocks as one raster (probabilities.vrt too)
    OUT/classes.tif ...      assembled COG with overviews, palette, names, .qml, preview.png
                             (and probabilities.tif), item.json (STAC) for the whole map
    OUT/mosaic.json          the run: grid, blocks (ok / skipped / failed), errors, seconds

**Why the blocks are bit-identical to ``predict_scene`` on the whole mosaic.** The chip grid
is laid over the *whole* mosaic, exactly as :func:`~geounet.inference.predict_scene` lays it.
A block's task predicts every chip that touches the block (the chip overlap around the block
is its *halo*) and blends them with :class:`~geounet.stitching.BlendMerger`:

- A pixel's value is ``sum(w_i * v_i) / sum(w_i)`` over the chips covering it, accumulated in
  float64 in row-major chip order, divided once into float32. Every chip covering a pixel of
  the block is one of the block's chips, added in the same (row-major) order, so each sum has
  the same terms in the same order.
- A chip's weights depend on its size and on which sides face a neighbour (whether it lies on
  the scene border). The block's merger covers the halo region plus one pixel on each side
  where the mosaic goes on, so "on the border" means the same as on the whole mosaic.
- A model's output for a chip can depend on the other chips of its batch (CPU and GPU kernels
  pick algorithms by batch size: last-bit differences). So a block's task runs every *whole
  batch* of the single-process run (consecutive ``batch_size`` chips in row-major order) that
  holds one of its chips: the same inputs, batch for batch.
- Classes, uint8 probabilities and nodata are derived per pixel with the single-process
  writer's own code.

What the block runs beyond its own chips (the halo chips and the batch-mates) is the block
overhead: about ``(block + chip + 2 (batch - 1) stride) / block`` per axis (docs/cluster.md).

Resume: a block's record is written after its outputs are published, with a fingerprint of
the model, the mosaic's grid and files, the options and the block size. A rerun with the same
fingerprint skips the recorded blocks. A killed worker's block is re-run by the scheduler; a
block that keeps failing is named in the result and ``mosaic.json`` while the others finish.

dask is imported inside the functions that need it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geounet import __version__
from geounet._cluster_vectorize import vectorize_raster_on_cluster
from geounet._files import staged_output, write_errors, write_text_atomic
from geounet.errors import ConfigError, InputFileError

log = logging.getLogger(__name__)

__all__ = [
    "BlockRun",
    "MosaicOptions",
    "MosaicResult",
    "plan_blocks",
    "predict_mosaic",
    "vectorize_raster_on_cluster",
]

BLOCKS_DIR = "blocks"
MANIFEST_NAME = "mosaic.json"
INPUT_VRT = "mosaic.vrt"
_TILE = 16  # GeoTIFF tiles are multiples of 16 px: blocks start on tile corners


@dataclass(frozen=True)
class MosaicOptions:
    """How a mosaic is cut into blocks and what is written from them.

    Attributes:
        block_size: Block side in pixels, a multiple of 16. Aligned to the COG tiles (512)
            and much larger than the chip, the halo overhead stays small (4096: a few percent).
        assemble: Also build one ``classes.tif`` (and ``probabilities.tif``) COG from the
            blocks; without it, the block COGs and the VRT over them are the map.
    """

    block_size: int = 4096
    assemble: bool = True

    def __post_init__(self) -> None:
        if self.block_size < _TILE or self.block_size % _TILE:
            raise ConfigError(
                f"block_size must be a multiple of {_TILE} px (GeoTIFF tiles), got "
                f"{self.block_size}; 4096 suits most clusters."
            )


@dataclass(frozen=True)
class Block:
    """One output block and the chip batches its task runs.

    Attributes:
        block_id: ``r<row>_c<col>`` of the block's first pixel, e.g. ``r004096_c000000``.
        row_off: First mosaic row.
        col_off: First mosaic column.
        height: Rows (the last block row may be shorter).
        width: Columns.
        batches: Numbers of the single-process run's batches holding a chip that touches
            the block.
    """

    block_id: str
    row_off: int
    col_off: int
    height: int
    width: int
    batches: tuple[int, ...]


@dataclass(frozen=True)
class BlockRun:
    """The outcome of one block.

    Attributes:
        block_id: The block.
        status: ``ok`` (predicted now), ``skipped`` (recorded by an earlier run) or ``failed``.
        seconds: Task time on the worker (``None`` when skipped or failed).
        error: ``"ExceptionType: message"`` when it failed.
        traceback: The worker-side traceback when it failed.
    """

    block_id: str
    status: Literal["ok", "skipped", "failed"]
    seconds: float | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class MosaicResult:
    """What :func:`predict_mosaic` did.

    Attributes:
        out_dir: The output folder.
        blocks: One :class:`BlockRun` per block, row-major.
        manifest: ``mosaic.json``.
        seconds: Wall time (cluster start included).
        outputs: Output kind -> path (``classes``, ``classes_vrt``, ``probabilities``, ``stac``,
            ...); empty while a block is missing.
    """

    out_dir: Path
    blocks: tuple[BlockRun, ...]
    manifest: Path
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every block is finished."""
        return all(b.status != "failed" for b in self.blocks)

    @property
    def failed(self) -> tuple[BlockRun, ...]:
        """The blocks that failed."""
        return tuple(b for b in self.blocks if b.status == "failed")

    @property
    def computed(self) -> tuple[str, ...]:
        """Ids of the blocks predicted by this run (not skipped)."""
        return tuple(b.block_id for b in self.blocks if b.status == "ok")


# --- planning (client) -------------------------------------------------------------------------


def _touching(offsets: Sequence[int], chip: int, size: int, start: int, stop: int) -> list[int]:
    """Indices of chips along one axis whose (scene-clipped) extent meets ``[start, stop)``."""
    return [i for i, o in enumerate(offsets) if o < stop and min(o + chip, size) > start]


def plan_blocks(grid: Any, block_size: int, batch_size: int) -> list[Block]:
    """Cut a chip grid's scene into blocks and find the chip batches each block needs.

    Args:
        grid: The :class:`~geounet.grid.ChipGrid` of the whole mosaic.
        block_size: Block side in pixels.
        batch_size: Chips per forward pass of the single-process run.

    Returns:
        The blocks, row-major.
    """
    height, width = grid.shape
    ncols = len(grid.col_offsets)
    blocks = []
    for r0 in range(0, height, block_size):
        r1 = min(r0 + block_size, height)
        rows = _touching(grid.row_offsets, grid.chip_size[0], height, r0, r1)
        for c0 in range(0, width, block_size):
            c1 = min(c0 + block_size, width)
            cols = _touching(grid.col_offsets, grid.chip_size[1], width, c0, c1)
            batches = sorted({(i * ncols + j) // batch_size for i in rows for j in cols})
            blocks.append(Block(f"r{r0:06d}_c{c0:06d}", r0, c0, r1 - r0, c1 - c0, tuple(batches)))
    return blocks


def _setup(spec: Any, source: str, options: Any) -> tuple[Any, Any, Any]:
    """The scene, its checks and its chip grid, exactly as :func:`predict_scene` sets them up."""
    from geounet._bands import check_scene_bands  # noqa: PLC0415
    from geounet._resolution import check_scene_resolution  # noqa: PLC0415
    from geounet.grid import ChipGrid  # noqa: PLC0415
    from geounet.raster import open_scene  # noqa: PLC0415

    nodata = options.nodata if options.nodata is not None else spec.nodata
    info = open_scene(source, nodata=nodata)
    check_scene_bands(spec.bands, info.bands, info.name)
    check_scene_resolution(spec.res, spec.crs, info, allow=options.allow_resolution_mismatch)
    if spec.recipe is not None:
        from geounet.radiometry import resolve_offset  # noqa: PLC0415

        offset = resolve_offset(options.dn_offset, info.paths, default=spec.recipe.offset)
        spec = dataclasses.replace(spec, scene_offset=offset)
    chip = options.chip_size or spec.chip_size
    overlap = options.overlap if options.overlap is not None else chip // 4
    if overlap >= chip:
        raise ConfigError(f"overlap {overlap} must be smaller than the chip size {chip}.")
    edge = "pad" if min(info.shape) < chip else "shift"
    return spec, info, ChipGrid.from_scene(info, chip, chip - overlap, edge)


def _fingerprint(model_digest: str, info: Any, options: Any, block_size: int) -> str:
    """What a block's outputs depend on; a recorded block is reused only under the same one."""
    files = []
    for path in info.paths:
        file = Path(path)
        if file.suffix.lower() == ".vrt" and file.is_file():  # rewritten by each run: content
            files.append([path, hashlib.sha256(file.read_bytes()).hexdigest()])
        elif file.exists():
            stat = file.stat()
            files.append([path, stat.st_size, stat.st_mtime_ns])
        else:  # an object-storage path: its name
            files.append([path])
    opts = {k: v for k, v in dataclasses.asdict(options).items() if k != "readers"}
    about = {
        "geounet": __version__,
        "model": model_digest,
        "grid": [list(info.shape), list(info.transform)[:6], info.crs.to_wkt()],
        "files": files,
        "options": opts,
        "block_size": block_size,
    }
    return hashlib.sha256(json.dumps(about, sort_keys=True, default=str).encode()).hexdigest()


def _recorded(blocks_dir: Path, block: Block, fingerprint: str) -> bool:
    """Whether an earlier run finished this block with the same inputs."""
    try:
        record = json.loads((blocks_dir / f"{block.block_id}.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        record.get("fingerprint") == fingerprint
        and (blocks_dir / block.block_id / "classes.tif").is_file()
    )


# --- the block task (worker) ------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """A block's pixel grid, as :func:`~geounet.raster.open_block_writer` needs it."""

    shape: tuple[int, int]
    transform: Any
    crs: Any


def predict_block_task(
    model_key: str, source: str, block: Block, out_dir: str, options: Any, fingerprint: str
) -> dict[str, Any]:
    """Predict one block with the worker's model into ``OUT/blocks/<id>/``, then record it."""
    from geounet._cluster import _MODELS  # noqa: PLC0415

    start = time.perf_counter()
    try:
        model, metadata = _MODELS[model_key]
    except KeyError:
        raise RuntimeError(
            f"this worker has no model {model_key}: its plugin did not load; see its log."
        ) from None
    blocks_dir = Path(out_dir) / BLOCKS_DIR
    predict_block(model, source, block, blocks_dir / block.block_id, options, metadata=metadata)
    seconds = time.perf_counter() - start
    record = {
        "block": block.block_id,
        "window": [block.row_off, block.col_off, block.height, block.width],
        "fingerprint": fingerprint,
        "seconds": round(seconds, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": os.uname().nodename,
    }
    write_text_atomic(blocks_dir / f"{block.block_id}.json", json.dumps(record, indent=2) + "\n")
    return {"seconds": seconds}


def predict_block(
    model: Any,
    source: str,
    block: Block,
    out_dir: str | Path,
    options: Any,
    *,
    metadata: Any = None,
) -> Path:
    """Predict one block of a mosaic into ``out_dir`` (the outputs of ``predict_scene``).

    Args:
        model: A model file path or an ``nn.Module`` (with ``metadata``).
        source: The mosaic raster (a VRT or COG path).
        block: The block, from :func:`plan_blocks` with ``options.batch_size``.
        out_dir: The block's folder, published whole when complete.
        options: The :class:`~geounet.inference.PredictOptions` of the whole map.
        metadata: Bands, normalisation and classes of an ``nn.Module``.

    Returns:
        The block's ``classes.tif``.
    """
    import rasterio  # noqa: PLC0415

    from geounet.engines import open_engine  # noqa: PLC0415
    from geounet.inference import _publish  # noqa: PLC0415
    from geounet.raster import GDAL_ENV  # noqa: PLC0415
    from geounet.stac import ItemAssets, write_stac_item  # noqa: PLC0415

    engine, spec = open_engine(model, metadata, options)
    spec, info, grid = _setup(spec, source, options)
    if options.readers is None:  # as predict_scene chooses them
        readers = 2 if engine.device_type == "cpu" else min(os.cpu_count() or 2, 16)
        options = dataclasses.replace(options, readers=readers)
    out = Path(out_dir)
    with staged_output(out) as work:
        (work / ".working").mkdir()
        with rasterio.Env(**GDAL_ENV), engine.session():
            _run_block(engine, spec, info, grid, block, options, work / ".working")
            _publish(work / ".working", work, spec, options.probabilities)
        shutil.rmtree(work / ".working")
        probs = work / "probabilities.tif" if options.probabilities else None
        assets = ItemAssets(work / "classes.tif", probabilities=probs, preview=work / "preview.png")
        write_stac_item(work / "item.json", item_id=f"{info.name}-{block.block_id}", assets=assets)
    return out / "classes.tif"


def _run_block(
    engine: Any, spec: Any, info: Any, grid: Any, block: Block, options: Any, work: Path
) -> None:
    """The chips of ``block`` through the model and the merger into the block's working files."""
    from rasterio.windows import Window  # noqa: PLC0415
    from rasterio.windows import transform as window_transform  # noqa: PLC0415

    from geounet.inference import _iter_batches, _StripWriter  # noqa: PLC0415
    from geounet.stitching import BlendMerger, MergedStrip  # noqa: PLC0415

    k = spec.scheme.num_classes
    height, width = info.shape
    chip_h, chip_w = grid.chip_size
    bottom, right = block.row_off + block.height, block.col_off + block.width
    rows = set(_touching(grid.row_offsets, chip_h, height, block.row_off, bottom))
    cols = set(_touching(grid.col_offsets, chip_w, width, block.col_off, right))
    ncols, total, bs = len(grid.col_offsets), len(grid), options.batch_size
    # Chips by their row-major number: never a list of the whole mosaic's chips.
    run = [
        grid.chip(i // ncols, i % ncols)
        for b in block.batches
        for i in range(b * bs, min((b + 1) * bs, total))
    ]
    own = [c for c in run if c.grid_row in rows and c.grid_col in cols]
    # The halo region: the union of the block's chips, clipped to the mosaic. Its merger gets
    # one more pixel on each side where the mosaic goes on, so that a chip faces a neighbour
    # there exactly when it does on the whole mosaic (the blend weights depend on it).
    r0 = min(c.row_off for c in own)
    c0 = min(c.col_off for c in own)
    r1 = max(min(c.row_off + chip_h, height) for c in own)
    c1 = max(min(c.col_off + chip_w, width) for c in own)
    oy, ox = (r0 - 1 if r0 > 0 else 0), (c0 - 1 if c0 > 0 else 0)
    local = (r1 - oy + (r1 < height), c1 - ox + (c1 < width))
    merger = BlendMerger(
        local, k + 1, grid.chip_size, blend=options.blend,
        overlap=(chip_h - grid.stride[0], chip_w - grid.stride[1]),
    )  # fmt: skip
    block_window = Window(block.col_off, block.row_off, block.width, block.height)
    block_grid = _Grid(
        (block.height, block.width), window_transform(block_window, info.transform), info.crs
    )
    writer = _StripWriter(block_grid, spec, work, options.probabilities)  # type: ignore[arg-type]

    def put(strip: MergedStrip) -> None:
        top = int(strip.window.row_off) + oy
        g0 = max(top, block.row_off)
        g1 = min(top + int(strip.window.height), block.row_off + block.height)
        if g1 <= g0:
            return
        cols_local = slice(block.col_off - ox, block.col_off - ox + block.width)
        values = strip.values[:, g0 - top : g1 - top, cols_local]
        # The last channel is the blended valid mask: every chip gives a pixel the same 0/1,
        # so it is the scene's valid mask exactly (what predict_scene takes from its reader).
        window = Window(0, g0 - block.row_off, block.width, g1 - g0)
        writer.put(MergedStrip(window, values[:-1]), values[-1] >= 0.5)

    try:
        for batch, x, valids in _iter_batches(info, spec, run, options, engine.raw_input):
            probs = engine(x)
            if probs.shape[1] != k:
                raise ConfigError(
                    f"the model returns {probs.shape[1]} channels but the class scheme has "
                    f"{k} classes {spec.scheme.names}."
                )
            for chip, p, v in zip(batch, probs, valids, strict=True):
                if chip.grid_row not in rows or chip.grid_col not in cols:
                    # A batch-mate, run only to keep the batch as predict_scene runs it.
                    continue
                stacked = np.concatenate([p, v[np.newaxis].astype(np.float32)])
                ch = min(chip.shape[0], height - chip.row_off)
                cw = min(chip.shape[1], width - chip.col_off)
                window = Window(chip.col_off - ox, chip.row_off - oy, cw, ch)
                for strip in merger.add(stacked[:, :ch, :cw], window):
                    put(strip)
        for strip in merger.finalize():
            put(strip)
    finally:
        writer.close()


# --- assembling (a worker) ---------------------------------------------------------------------


def assemble_task(
    out_dir: str, source: str, blocks: Sequence[Block], scheme: dict, probabilities: bool,
    assemble: bool, name: str,
) -> dict[str, str]:  # fmt: skip
    """Write the VRTs over the blocks and, with ``assemble``, one COG of the whole map."""
    import rasterio  # noqa: PLC0415

    from geounet._mosaic_vrt import VrtSource, blocks_vrt_xml  # noqa: PLC0415
    from geounet._qml import category_names_aux_xml, paletted_raster_qml  # noqa: PLC0415
    from geounet.classes import SCHEME_TAG, ClassScheme  # noqa: PLC0415
    from geounet.inference import write_preview  # noqa: PLC0415
    from geounet.raster import (  # noqa: PLC0415
        GDAL_ENV,
        open_block_writer,
        open_raster,
        open_scene,
        write_cog,
    )
    from geounet.stac import ItemAssets, write_stac_item  # noqa: PLC0415

    out = Path(out_dir)
    info = open_scene(source)
    classes = ClassScheme.from_dict(scheme)
    grid = {"shape": info.shape, "transform": info.transform, "crs_wkt": info.crs.to_wkt()}
    outputs: dict[str, str] = {}

    def sources(file: str) -> list[VrtSource]:
        return [
            VrtSource(f"{BLOCKS_DIR}/{b.block_id}/{file}", b.row_off, b.col_off, b.height,
                      b.width, relative=True)
            for b in blocks
        ]  # fmt: skip

    vrt = blocks_vrt_xml(
        **grid, sources=sources("classes.tif"), count=1, dtype="uint8",
        nodata=classes.ignore_index, colormap=classes.colormap(),
        category_names=_category_names(classes), metadata={SCHEME_TAG: json.dumps(scheme)},
    )  # fmt: skip
    outputs["classes_vrt"] = str(write_text_atomic(out / "classes.vrt", vrt))
    names = [f"p_{c.name}" for c in classes.classes]
    if probabilities:
        vrt = blocks_vrt_xml(
            **grid, sources=sources("probabilities.tif"), count=classes.num_classes,
            dtype="uint8", descriptions=names, mask=True,
        )  # fmt: skip
        outputs["probabilities_vrt"] = str(write_text_atomic(out / "probabilities.vrt", vrt))
    if not assemble:
        return outputs
    work = out / f".assemble-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        with rasterio.Env(**GDAL_ENV):
            writer = open_block_writer(
                work / "classes.tif", like=info, count=1, dtype="uint8",
                nodata=classes.ignore_index, colormap=classes.colormap(),
            )  # fmt: skip
            writer.update_tags(**{SCHEME_TAG: json.dumps(scheme)})
            prob_writer = None
            if probabilities:
                prob_writer = open_block_writer(
                    work / "probabilities.tif", like=info, count=classes.num_classes,
                    dtype="uint8",
                )  # fmt: skip
                for i, n in enumerate(names, start=1):
                    prob_writer.set_band_description(i, n)
            # One block in memory at a time: the map is never held whole.
            for b in blocks:
                window = rasterio.windows.Window(b.col_off, b.row_off, b.width, b.height)
                folder = out / BLOCKS_DIR / b.block_id
                with open_raster(folder / "classes.tif", what="block class raster") as src:
                    writer.write(src.read(), window=window)
                if prob_writer is not None:
                    with open_raster(
                        folder / "probabilities.tif", what="block probabilities"
                    ) as src:
                        prob_writer.write(src.read(), window=window)
                        prob_writer.write_mask(src.read_masks(1) > 0, window=window)
            writer.close()
            if prob_writer is not None:
                prob_writer.close()
            write_cog(work / "classes.tif", out / "classes.tif", resampling="mode")
            write_text_atomic(out / "classes.tif.aux.xml", category_names_aux_xml(classes))
            write_text_atomic(out / "classes.qml", paletted_raster_qml(classes))
            if probabilities:
                write_cog(
                    work / "probabilities.tif", out / "probabilities.tif", resampling="average"
                )
            write_preview(out / "classes.tif", out / "preview.png", classes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    probs = out / "probabilities.tif" if probabilities else None
    assets = ItemAssets(out / "classes.tif", probabilities=probs, preview=out / "preview.png")
    outputs["stac"] = str(write_stac_item(out / "item.json", item_id=name, assets=assets))
    outputs |= {"classes": str(out / "classes.tif"), "qml": str(out / "classes.qml")}
    outputs["preview"] = str(out / "preview.png")
    if probs is not None:
        outputs["probabilities"] = str(probs)
    return outputs


def _category_names(scheme: Any) -> list[str]:
    """Names by pixel value, 0 .. ignore index (empty for unused values)."""
    names = [""] * (scheme.ignore_index + 1)
    for i, c in enumerate(scheme.classes):
        names[i] = c.name
    return names


# --- the client ---------------------------------------------------------------------------------


def predict_mosaic(
    model: Any,
    mosaic: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    metadata: Any = None,
    options: Any = None,
    mosaic_options: MosaicOptions | None = None,
    cluster: Any = None,
) -> MosaicResult:
    """Predict one large raster as blocks on a dask cluster into one seamless map.

    Args:
        model: A ``.safetensors`` model file (its bytes go to each worker once), or an
            ``nn.Module`` (then ``metadata``).
        mosaic: One raster (a VRT of many scenes, a COG), or several overlapping scenes on one
            pixel grid, which are put into ``OUT/mosaic.vrt`` first (the last one wins where
            they overlap). Workers open it at the same path: use shared storage.
        out_dir: Output folder (see the module docstring).
        metadata: Bands, normalisation and classes of an ``nn.Module``.
        options: The :class:`~geounet.inference.PredictOptions` (chip, overlap, batch,
            blend...), the same as for ``predict_scene``.
        mosaic_options: Block size, and whether to assemble one COG.
        cluster: A :class:`~geounet.distributed.ClusterOptions` (local workers or a scheduler,
            retries).

    Returns:
        The blocks' outcomes and the outputs; also written to ``OUT/mosaic.json``. Failed
        blocks do not raise: check :attr:`MosaicResult.failed` and rerun to finish them.

    Raises:
        GeounetError: Bad input (a missing or unreadable mosaic, bands that differ from the
            model's, scenes off one grid), raised before any task is submitted.
    """
    from geounet.distributed import ClusterOptions, _model_plugin  # noqa: PLC0415
    from geounet.inference import PredictOptions  # noqa: PLC0415

    options = options or PredictOptions()
    mosaic_options = mosaic_options or MosaicOptions()
    cluster = cluster or ClusterOptions()
    spec, plugin_kwargs, digest, plugin_name = _model_plugin(model, metadata)
    out = Path(out_dir)
    if isinstance(mosaic, str | Path):
        source = str(mosaic)
        if not Path(source).exists() and "://" not in source and not source.startswith("/vsi"):
            raise InputFileError(f"mosaic {source} does not exist; check the path.")
    else:
        from geounet._mosaic_vrt import mosaic_vrt  # noqa: PLC0415

        paths = [Path(p) for p in mosaic]
        for p in paths:
            if not p.is_file():
                raise InputFileError(f"mosaic scene {p} does not exist; check the path.")
        with write_errors(out):
            out.mkdir(parents=True, exist_ok=True)
        source = str(mosaic_vrt(paths, out / INPUT_VRT))
    spec, info, grid = _setup(spec, source, options)  # checks bands etc. before any compute
    blocks = plan_blocks(grid, mosaic_options.block_size, options.batch_size)
    fingerprint = _fingerprint(digest, info, options, mosaic_options.block_size)
    blocks_dir = out / BLOCKS_DIR
    with write_errors(out):
        blocks_dir.mkdir(parents=True, exist_ok=True)
    done = {b.block_id for b in blocks if _recorded(blocks_dir, b, fingerprint)}
    todo = [b for b in blocks if b.block_id not in done]
    log.info(
        "mosaic %s: %d blocks of %d px, %d recorded by an earlier run, %d to predict",
        info.name, len(blocks), mosaic_options.block_size, len(done), len(todo),
    )  # fmt: skip
    start = time.perf_counter()
    runs: dict[str, BlockRun] = {b: BlockRun(b, "skipped") for b in done}
    outputs: dict[str, Path] = {}
    from geounet.distributed import _cluster_info, _cuda, _default_workers  # noqa: PLC0415

    gpu = options.device.startswith("cuda") or (options.device == "auto" and _cuda())
    workers = cluster.workers or _default_workers(max(1, len(todo)), gpu)
    local = cluster.scheduler is None
    if local:
        from geounet._cluster import local_cpus  # noqa: PLC0415

        plugin_kwargs["torch_threads"] = max(1, local_cpus() // workers)
    from geounet._cluster import ModelPlugin, open_client  # noqa: PLC0415

    with open_client(cluster.scheduler, workers, cluster.threads_per_worker) as client:
        try:
            if todo:
                client.register_plugin(ModelPlugin(plugin_name, **plugin_kwargs), name=plugin_name)
                runs |= _run_blocks(client, plugin_name, source, todo, out, options,
                                    fingerprint, cluster.retries)  # fmt: skip
            previous = _previous_outputs(out, fingerprint, mosaic_options.assemble)
            if not todo and previous is not None:  # finished earlier: nothing to redo
                outputs = previous
            elif all(r.status != "failed" for r in runs.values()):
                future = client.submit(
                    assemble_task, str(out), source, blocks, spec.scheme.to_dict(),
                    options.probabilities, mosaic_options.assemble, info.name,
                    key=f"geounet-assemble-{uuid.uuid4().hex[:8]}", retries=cluster.retries,
                    pure=False,
                )  # fmt: skip
                outputs = {k: Path(v) for k, v in future.result().items()}
        finally:
            if not local:
                import contextlib  # noqa: PLC0415

                with contextlib.suppress(Exception):
                    client.unregister_worker_plugin(plugin_name)
    for leftover in blocks_dir.glob(".*.work-*"):  # what killed attempts left behind
        shutil.rmtree(leftover, ignore_errors=True)
    ordered = tuple(runs[b.block_id] for b in blocks)
    seconds = time.perf_counter() - start
    manifest = {
        "command": "predict-mosaic",
        "geounet_version": __version__,
        "mosaic": source,
        "model": str(model) if isinstance(model, str | Path) else None,
        "fingerprint": fingerprint,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "cluster": _cluster_info(cluster, workers),
        "grid": {
            "shape": list(info.shape),
            "transform": list(info.transform)[:6],
            "crs": info.crs.to_wkt(),
        },  # fmt: skip
        "block_size": mosaic_options.block_size,
        "blocks_total": len(blocks),
        "blocks_computed": sum(r.status == "ok" for r in ordered),
        "blocks_skipped": sum(r.status == "skipped" for r in ordered),
        "blocks_failed": sum(r.status == "failed" for r in ordered),
        "outputs": {k: str(v) for k, v in outputs.items()},
        "blocks": [
            {
                "id": b.block_id,
                "window": [b.row_off, b.col_off, b.height, b.width],
                **dataclasses.asdict(runs[b.block_id]),
            }
            for b in blocks
        ],  # fmt: skip
    }
    path = write_text_atomic(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return MosaicResult(out, ordered, path, seconds, outputs)


def _previous_outputs(out: Path, fingerprint: str, assemble: bool) -> dict[str, Path] | None:
    """The outputs of an earlier, complete run with the same fingerprint, if all still exist."""
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    outputs = {k: Path(v) for k, v in manifest.get("outputs", {}).items()}
    if (
        manifest.get("fingerprint") != fingerprint
        or manifest.get("blocks_failed", 1)
        or ("classes" in outputs) != assemble
        or "classes_vrt" not in outputs
        or not all(p.exists() for p in outputs.values())
    ):
        return None
    return outputs


def report_mosaic(result: MosaicResult) -> None:
    """Echo a :class:`MosaicResult` for the CLI; fail (exit 1) naming the failed blocks."""
    import click  # noqa: PLC0415

    total, failed = len(result.blocks), result.failed
    skipped = sum(b.status == "skipped" for b in result.blocks)
    click.echo(
        f"predicted {len(result.computed)} of {total} blocks ({skipped} finished earlier) into "
        f"{result.out_dir} in {result.seconds:.1f} s; summary in {result.manifest}"
    )
    if failed:
        lines = "\n".join(f"  {b.block_id}: {b.error}" for b in failed)
        raise click.ClickException(
            f"{len(failed)} of {total} blocks failed (tracebacks in {result.manifest}); the "
            f"others are finished, and a rerun with the same options predicts only these:\n{lines}"
        )
    if "classes" in result.outputs:
        click.echo(f"wrote {result.outputs['classes']}")
    elif "classes_vrt" in result.outputs:
        click.echo(f"wrote {result.outputs['classes_vrt']}")


def _run_blocks(
    client: Any, plugin_name: str, source: str, todo: Sequence[Block], out: Path, options: Any,
    fingerprint: str, retries: int,
) -> dict[str, BlockRun]:  # fmt: skip
    """Submit one task per block; collect the outcomes as they finish (with a progress bar)."""
    from distributed import as_completed  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    token = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            predict_block_task,
            plugin_name,
            source,
            b,
            str(out),
            options,
            fingerprint,
            key=f"geounet-mosaic-{b.block_id}-{token}",
            retries=retries,
            pure=False,
        ): b  # fmt: skip
        for b in todo
    }
    runs: dict[str, BlockRun] = {}
    with tqdm(total=len(futures), unit="block", desc="predict blocks") as progress:
        for future in as_completed(futures):
            block = futures[future]
            try:
                done = future.result()
            except Exception as exc:  # any task error: reported per block, the others go on
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                runs[block.block_id] = BlockRun(
                    block.block_id, "failed", error=f"{type(exc).__name__}: {exc}", traceback=tb
                )
                log.error("block %s failed: %s", block.block_id, runs[block.block_id].error)
            else:
                runs[block.block_id] = BlockRun(block.block_id, "ok", done["seconds"])
            future.release()
            progress.update()
    return runs
