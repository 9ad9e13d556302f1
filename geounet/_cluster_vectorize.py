"""``vectorize_raster`` with its blocks polygonised on dask workers and merged on the client.

:func:`geounet.vectorize.vectorize_raster` reads a block, labels and polygonises it (the costly
part: scipy labelling, GDAL polygonising, coverage simplification), then joins the pieces that
touch a seam with a union-find, block row by block row. Here the first part of every block is
a dask task, run in parallel where the raster is (shared storage); the client replays the
second part in the very same order with the pieces the tasks return: the same union-find
joins, the same unions, the same writes. The GeoPackage therefore holds the same polygons,
attributes and feature order as the single-process vectoriser with the same ``block_size``.

The client holds what one block row of tasks returns (a block's polygons and its edge labels)
plus the regions open at the seam below, as the single-process vectoriser does; tasks run at
most a few block rows ahead of it.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def polygonise_block_task(grid: Any, window: tuple[int, int, int, int]) -> dict[str, Any]:
    """One block through the single-process vectoriser's own block step (on a worker).

    Returns:
        The block's finished regions (not on a seam), its open regions by label, the labels
        and classes along its four edges, and its label count.
    """
    from rasterio.windows import Window  # noqa: PLC0415

    from geounet.raster import open_raster  # noqa: PLC0415
    from geounet.vectorize import _SeamJoiner  # noqa: PLC0415

    col_off, row_off, width, height = window
    win = Window(col_off, row_off, width, height)
    with open_raster(grid.class_path, what="class raster") as src:
        data = src.read(1, window=win)
    probs = None
    if grid.prob_path is not None:
        with open_raster(grid.prob_path, what="probabilities raster") as src:
            probs = src.read(window=win)
    joiner = _SeamJoiner()  # ids from 1: the client shifts them onto its own
    finished: list[Any] = []
    top, bottom, left, right = joiner.add_block(grid, win, data, probs, finished)
    return {
        "finished": finished,
        "open": joiner._regions,  # label -> region, every one its own root
        "labels": joiner._next_id - 1,
        "edges": (top, bottom, left, right),
        "data_edges": (data[0].copy(), data[-1].copy(), data[:, 0].copy(), data[:, -1].copy()),
    }


def vectorize_raster_on_cluster(
    class_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    cluster: Any = None,
    probabilities_path: str | os.PathLike[str] | None = None,
    simplify_m: float = 0.0,
    min_area_m2: float = 0.0,
    classes: Any = None,
    block_size: int = 1024,
) -> Path:
    """Polygonise a class raster like :func:`~geounet.vectorize.vectorize_raster`, on dask.

    Args:
        class_path: The class raster (``classes.tif`` or the ``classes.vrt`` of a mosaic);
            workers open it at the same path.
        out_path: The ``.gpkg`` to write (by the client); an existing file is replaced.
        cluster: A :class:`~geounet.distributed.ClusterOptions` (local workers or a
            scheduler).
        probabilities_path: The probabilities raster (adds ``mean_prob``).
        simplify_m: Simplification tolerance in metres.
        min_area_m2: Drop smaller polygons.
        classes: Class names to keep.
        block_size: Block side in pixels; the same as for
            :func:`~geounet.vectorize.vectorize_raster` gives the same output.

    Returns:
        The path of the written GeoPackage.

    Raises:
        GeounetError: The same input and output errors as ``vectorize_raster``, raised
            before any task is submitted.
    """
    from geounet._cluster import local_cpus, open_client  # noqa: PLC0415
    from geounet._files import staged_file, write_errors  # noqa: PLC0415
    from geounet.distributed import ClusterOptions  # noqa: PLC0415
    from geounet.vectorize import (  # noqa: PLC0415
        LAYER_NAME,
        _check_output,
        _check_settings,
        _LayerWriter,
        _open_inputs,
    )

    out = Path(out_path)
    _check_settings(simplify_m, min_area_m2, block_size)
    grid = _open_inputs(Path(class_path), probabilities_path, classes, simplify_m)
    _check_output(out)
    cluster = cluster or ClusterOptions()
    height, width = grid.grid.shape  # the inputs (_Inputs) and their grid
    ncols = -(-width // block_size)
    nblocks = -(-height // block_size) * ncols
    workers = cluster.workers or max(1, min(nblocks, local_cpus()))
    with (
        open_client(cluster.scheduler, workers, cluster.threads_per_worker) as client,
        staged_file(out) as tmp,
        write_errors(out),
    ):
        writer = _LayerWriter(tmp, grid, min_area_m2=min_area_m2)
        _replay(client, grid, writer, int(block_size), cluster.retries, ahead=max(2 * ncols, 8))
        writer.close()
    log.info("wrote %d polygons to %s (layer %r)", writer.count, out, LAYER_NAME)
    return out


def _replay(client: Any, grid: Any, writer: Any, block_size: int, retries: int, ahead: int) -> None:
    """The single-process block loop (``_vectorize_blocks``) with the blocks from the tasks."""
    from geounet.vectorize import _finish, _SeamJoiner  # noqa: PLC0415

    height, width = grid.grid.shape
    windows = [
        (col_off, row_off, min(block_size, width - col_off), min(block_size, height - row_off))
        for row_off in range(0, height, block_size)
        for col_off in range(0, width, block_size)
    ]
    pending: deque[Any] = deque()
    submitted = 0

    def fill() -> None:
        nonlocal submitted
        while submitted < len(windows) and len(pending) < ahead:
            pending.append(
                client.submit(polygonise_block_task, grid, windows[submitted], pure=False,
                              retries=retries)
            )  # fmt: skip
            submitted += 1

    joiner = _SeamJoiner()
    above = np.zeros(width, np.int64), np.zeros(width, np.uint8)
    fill()
    index = 0
    for row_off in range(0, height, block_size):
        bottom = np.zeros(width, np.int64), np.zeros(width, np.uint8)
        left: tuple[np.ndarray, np.ndarray] | None = None
        finished: list[Any] = []
        for col_off in range(0, width, block_size):
            future = pending.popleft()
            part = future.result()
            future.release()
            fill()
            index += 1
            # Shift the block's labels onto the client's ids, as add_block would have numbered
            # them, and take in its open regions.
            base = joiner._next_id - 1
            joiner._next_id += part["labels"]
            for label, region in part["open"].items():
                joiner._parent[base + label] = base + label
                joiner._regions[base + label] = region
            finished.extend(part["finished"])
            top_ids, bottom_ids, left_ids, right_ids = (
                np.where(e > 0, e + base, 0) for e in part["edges"]
            )
            d_top, d_bottom, d_left, d_right = part["data_edges"]
            if left is not None:
                joiner.join(left, (left_ids, d_left))
            cols = slice(col_off, col_off + len(d_top))
            if row_off > 0:
                joiner.join((above[0][cols], above[1][cols]), (top_ids, d_top))
            left = right_ids, d_right
            bottom[0][cols], bottom[1][cols] = bottom_ids, d_bottom
        last = row_off + block_size >= height
        finished.extend(joiner.close(None if last else bottom[0]))
        above = bottom
        writer.write(*_finish(grid, finished))
