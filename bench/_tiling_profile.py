"""Where geounet's tiling spends its CPU: one chip at a time in the main thread, under cProfile.

Runs the same per-chip path as ``tile_scene`` (``_ChipWriter.__call__``) serially, so cProfile
sees everything, and times the phases (read, valid mask, statistics, chip write, index) in
process CPU seconds, which a busy shared machine does not inflate. Use the scene cached by
``bench/tiling.py``; ``PYTHONPATH=DIR`` profiles a modified copy of the package in ``DIR``::

    python bench/_tiling_profile.py /tmp/geounet-bench-tiling/scene_8192.tif --chips 64
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import rasterio

import geounet.tiling as tiling
from geounet._chip_index import write_index
from geounet._scene_set import PreparedScene
from geounet._stats import BandStatsAccumulator
from geounet.classes import ClassScheme
from geounet.grid import ChipGrid
from geounet.raster import GDAL_ENV, SceneInfo, open_scene

PHASES: dict[str, float] = defaultdict(float)


def _timed(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            PHASES[name] += time.process_time() - t0

    return wrapper


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scene")
    p.add_argument("--chip", type=int, default=512)
    p.add_argument("--chips", type=int, default=64, help="how many chips (row-major)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument(
        "--gdal-num-threads",
        default=GDAL_ENV["GDAL_NUM_THREADS"],
        help="GDAL_NUM_THREADS while chips are read and written (default: geounet's GDAL_ENV)",
    )
    a = p.parse_args()

    SceneInfo.read = _timed("read (decode + copy)", SceneInfo.read)
    SceneInfo.valid_mask = _timed("valid mask", SceneInfo.valid_mask)
    BandStatsAccumulator.add = _timed("stats add", BandStatsAccumulator.add)
    tiling.write_chip = _timed("write chip (zstd)", tiling.write_chip)

    scene = open_scene(a.scene)
    grid = ChipGrid.from_scene(scene, a.chip, a.chip)
    options = tiling.TilingOptions(chip_size=a.chip, stride=a.chip)
    tmp = Path(tempfile.mkdtemp(prefix="geounet-prof-"))
    (tmp / "images").mkdir()
    prepared = PreparedScene(scene, grid, None, scene.name, None, 0)
    writer = tiling._ChipWriter(prepared, ClassScheme.default(), options, tmp)
    chips = list(grid)[: a.chips]
    prof = cProfile.Profile(time.process_time)
    t0, c0 = time.perf_counter(), time.process_time()
    with rasterio.Env(**{**GDAL_ENV, "GDAL_NUM_THREADS": a.gdal_num_threads}):
        prof.enable()
        records = [writer(chip) for chip in chips]
        prof.disable()
    t_idx = time.process_time()
    write_index(tmp / "index.gpkg", [r for r in records if r], {scene.name: scene.crs})
    PHASES["index.gpkg (geopandas)"] = time.process_time() - t_idx
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    shutil.rmtree(tmp)

    print(f"{len(chips)} chips of {a.chip} px, 1 thread: {cpu:.2f} s CPU, {wall:.2f} s wall")
    for name, sec in sorted(PHASES.items(), key=lambda kv: -kv[1]):
        print(
            f"  {name:<26}{sec:>7.2f} s  {1000 * sec / len(chips):>7.1f} ms/chip  {sec / cpu:>5.0%}"
        )
    pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)


if __name__ == "__main__":
    main()
