"""Benchmark: geounet's tiling vs a plain read of the same windows vs ``gdal_retile.py``.

What is measured
----------------
A 13-band uint16 scene (default 8192 x 8192 = 1.7 GB uncompressed, tiled 512 x 512, DEFLATE +
horizontal predictor, nodata 0, "reflectance-like" content: parcels with per-class spectra,
smooth brightness fields and sensor noise, seeded) is generated once into ``--workdir`` and
cut into ``--chip`` x ``--chip`` chips at stride ``--stride`` (default: 256 chips of 512 px).
Each contender runs in its own subprocess, one after the other, on the same scene:

* ``I/O floor``: every chip window read with rasterio (all bands) and encoded with geounet's
  chip profile (ZSTD level 1 + predictor, 256 px tiles, band interleave) into memory
  (``/vsimem``, no files), with the same threads and GDAL settings as geounet: the floor of
  tiling, and the headline ratio (target: geounet <= 1.3x its wall and CPU time).
* ``plain read``: every chip window read and discarded, same threads: the decode floor alone.
  A 1-thread line too.
* ``geounet``: ``geounet.tiling.tile_scene`` without labels, default codec (ZSTD level 1 +
  predictor, 256 px blocks). It also computes the scene statistics and writes the chip index.
* ``gdal_retile``: Debian's ``gdal_retile.py`` (single-threaded Python over GDAL 3.6) on the
  same layout, once with the same codec as geounet (ZSTD 1 + predictor + 256 px blocks), once with its default (uncompressed, striped) output, and once
  with the same codec and ``NUM_THREADS=ALL_CPUS`` (GDAL's own threaded compression).
* ``geounet + labels`` (extra): the same with a generated polygon GeoPackage burnt into masks.

Times are process wall times (interpreter start-up and imports included, as a user sees
them); "inner" is the time of the tiling call itself where the child can report it. Peak RSS
and CPU time come from ``wait4`` on each child; "others" is the CPU time other processes used
during the run: on a shared machine a busy neighbour takes cores from the threaded
contenders, so compare CPU seconds too, and use ``--wait-quiet`` / ``--repeat``.

Before each run the page cache is flushed and dropped (when permitted) and the scene is read
once, so every contender starts from the same warm cache with no dirty pages from the
previous run. Outputs are deleted at the end unless
``--keep``; the generated scene stays cached unless ``--drop-scene``.

Usage::

    python bench/tiling.py                  # full size: 8192 px, 256 chips (a few minutes)
    python bench/tiling.py --size 2048      # quick mode: 16 chips
    python bench/tiling.py --compare-path /tmp/copy   # also time a modified geounet/ (A/B)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GDAL_RETILE = "/usr/bin/gdal_retile.py"
SYSTEM_PYTHON = "/usr/bin/python3"
BANDS = 13
SCENE_BLOCK = 512
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "geounet-bench-tiling"


# --------------------------------------------------------------------------- scene generation


def _bilinear_field(coarse: np.ndarray, scale: int, r0: int, rows: int, width: int) -> np.ndarray:
    """Rows ``r0:r0+rows`` of ``coarse`` upsampled ``scale`` times (separable bilinear)."""
    cx = np.arange(width, dtype=np.float32) / scale
    i0 = cx.astype(np.int64)
    fx = cx - i0
    along_cols = coarse[:, i0] * (1 - fx) + coarse[:, i0 + 1] * fx
    ry = np.arange(r0, r0 + rows, dtype=np.float32) / scale
    j0 = ry.astype(np.int64)
    fy = (ry - j0)[:, None]
    return along_cols[j0] * (1 - fy) + along_cols[j0 + 1] * fy


def make_scene(path: Path, size: int, seed: int = 0) -> None:
    """Write the reflectance-like 13-band uint16 scene (see the module docstring)."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from geounet.sample_data import SENTINEL2_BANDS

    rng = np.random.default_rng(seed)
    n_classes, parcel = 10, 96
    # Per-class spectra in reflectance x 1e4: mostly 300..4500 DN like S2 L2A land cover.
    spectra = rng.uniform(300, 4500, size=(n_classes, BANDS)).astype(np.float32)
    n_parcels = size // parcel + 2
    parcels = rng.integers(0, n_classes, size=(n_parcels, n_parcels))
    bright = rng.standard_normal((size // 256 + 2, size // 256 + 2)).astype(np.float32)
    texture = rng.standard_normal((size // 32 + 2, size // 32 + 2)).astype(np.float32)
    block = min(SCENE_BLOCK, size)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": BANDS, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(10.0, 0, 330000.0, 0, -10.0, 5900000.0),
        "nodata": 0, "tiled": True, "blockxsize": block, "blockysize": block,
        "compress": "deflate", "predictor": 2, "num_threads": "all_cpus", "bigtiff": "if_safer",
    }  # fmt: skip
    tmp = path.with_suffix(".partial.tif")
    cols = np.arange(size) // parcel
    with rasterio.open(tmp, "w", **profile) as dst:
        for i, name in enumerate(SENTINEL2_BANDS, start=1):
            dst.set_band_description(i, name)
        for r0 in range(0, size, block):
            rows = min(block, size - r0)
            strip_rng = np.random.default_rng([seed, r0])
            cls = parcels[(np.arange(r0, r0 + rows) // parcel)[:, None], cols[None, :]]
            gain = 1.0 + 0.25 * _bilinear_field(bright, 256, r0, rows, size)
            gain += 0.08 * _bilinear_field(texture, 32, r0, rows, size)
            data = np.empty((BANDS, rows, size), dtype=np.uint16)
            for b in range(BANDS):
                band = spectra[cls, b] * gain
                band += strip_rng.standard_normal((rows, size), dtype=np.float32) * 20.0
                np.clip(band, 1, 10000, out=band)
                data[b] = band
            dst.write(data, window=Window(0, r0, size, rows))
    tmp.rename(path)


def make_labels(path: Path, size: int, seed: int = 0) -> None:
    """Write random polygons (OSM ``fclass`` values) over the scene as a GeoPackage."""
    import yaml
    from shapely.geometry import Point, box

    from geounet.sample_data import class_map_path, make_synthetic_labels

    mapping = yaml.safe_load(class_map_path("osm_fclass").read_text())["mapping"]
    values = [v for vs in mapping.values() for v in vs]
    rng = np.random.default_rng(seed + 1)
    x0, y1, res = 330000.0, 5900000.0, 10.0
    polygons = []
    for k in range(max(size * size // (128 * 128), 8)):
        cx, cy = x0 + rng.uniform(0, size) * res, y1 - rng.uniform(0, size) * res
        r = rng.uniform(10, 200) * res
        geom = (
            Point(cx, cy).buffer(r, quad_segs=6) if k % 2 else box(cx - r, cy - r, cx + r, cy + r)
        )
        polygons.append((geom, str(rng.choice(values))))
    tmp = path.with_suffix(".partial.gpkg")
    tmp.unlink(missing_ok=True)
    make_synthetic_labels(tmp, polygons, crs="EPSG:32633", column="fclass")
    tmp.rename(path)


# --------------------------------------------------------------------------- child processes


def _child_plain(scene: str, chip: int, stride: int, workers: int) -> dict[str, float]:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    from rasterio.windows import Window

    from geounet.grid import axis_offsets
    from geounet.raster import GDAL_ENV

    local = threading.local()

    with rasterio.Env(**GDAL_ENV):
        with rasterio.open(scene) as ds:
            h, w = ds.height, ds.width
        windows = [
            Window(c, r, chip, chip)
            for r in axis_offsets(h, chip, stride)
            for c in axis_offsets(w, chip, stride)
        ]

        def read(window: Window) -> int:
            ds = getattr(local, "ds", None)
            if ds is None:
                ds = local.ds = rasterio.open(scene)
            return ds.read(window=window).nbytes

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            nbytes = sum(pool.map(read, windows))
        inner = time.perf_counter() - t0
    return {"inner_s": inner, "chips": len(windows), "bytes_read": nbytes}


def _child_floor(scene: str, chip: int, stride: int, workers: int) -> dict[str, float]:
    """The I/O floor: read every chip window and encode it as geounet's chip, in memory.

    Same threads and GDAL settings as ``tile_scene`` (a pool of ``workers``, GDAL threads
    sharing what the pool leaves), the same GeoTIFF profile as ``geounet.raster.write_chip``
    (ZSTD level 1, predictor 2, 256 px tiles, band interleave, CRS, transform, nodata, band
    names), written to ``/vsimem`` and dropped: no files, no statistics, no index.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.windows import Window

    from geounet.grid import axis_offsets
    from geounet.raster import GDAL_ENV

    local = threading.local()
    with rasterio.open(scene) as ds:
        h, w = ds.height, ds.width
        meta = {"crs": ds.crs, "nodata": ds.nodata, "dtype": ds.dtypes[0], "count": ds.count}
        transform, names = ds.transform, ds.descriptions
    windows = [
        Window(c, r, chip, chip)
        for r in axis_offsets(h, chip, stride)
        for c in axis_offsets(w, chip, stride)
    ]
    profile = {
        "driver": "GTiff", "width": chip, "height": chip, **meta, "tiled": True,
        "blockxsize": min(chip, 256), "blockysize": min(chip, 256), "interleave": "band",
        "compress": "zstd", "zstd_level": 1, "predictor": 2,
    }  # fmt: skip

    def one(window: Window) -> int:
        ds = getattr(local, "ds", None)
        if ds is None:
            ds = local.ds = rasterio.open(scene)
        data = ds.read(window=window)
        chip_transform = rasterio.windows.transform(window, transform)
        with MemoryFile() as mem:  # a /vsimem file, freed on close
            with mem.open(transform=chip_transform, **profile) as dst:
                for i, name in enumerate(names, start=1):
                    if name:
                        dst.set_band_description(i, name)
                dst.write(data)
            return mem.getbuffer().nbytes

    gdal_threads = max(1, (os.cpu_count() or 1) // workers)
    with rasterio.Env(**{**GDAL_ENV, "GDAL_NUM_THREADS": str(gdal_threads)}):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            nbytes = sum(pool.map(one, windows))
        inner = time.perf_counter() - t0
    return {"inner_s": inner, "chips": len(windows), "bytes_encoded": nbytes}


def _child_geounet(
    scene: str, out: str, chip: int, stride: int, labels: str | None, workers: int | None
) -> dict[str, float]:
    from geounet.tiling import TilingOptions, tile_scene

    class_map = None
    if labels:
        from geounet.classes import ClassMap
        from geounet.sample_data import class_map_path

        class_map = ClassMap.from_yaml(class_map_path("osm_fclass"))
    options = TilingOptions(chip_size=chip, stride=stride, workers=workers)
    t0 = time.perf_counter()
    result = tile_scene(scene, out, labels=labels, class_map=class_map, options=options)
    inner = time.perf_counter() - t0
    return {"inner_s": inner, "chips": result.chips_written}


def _child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["plain", "floor", "geounet", "generate"])
    p.add_argument("--scene", required=True)
    p.add_argument("--out")
    p.add_argument("--chip", type=int, required=True)
    p.add_argument("--stride", type=int, required=True)
    p.add_argument("--labels")
    p.add_argument("--workers", type=int)
    p.add_argument("--size", type=int)
    a = p.parse_args(argv)
    if a.mode == "generate":
        if not Path(a.scene).exists():
            make_scene(Path(a.scene), a.size)
        if a.labels and not Path(a.labels).exists():
            make_labels(Path(a.labels), a.size)
        return
    if a.mode == "plain":
        res = _child_plain(a.scene, a.chip, a.stride, a.workers or os.cpu_count() or 1)
    elif a.mode == "floor":
        res = _child_floor(a.scene, a.chip, a.stride, a.workers or os.cpu_count() or 1)
    else:
        res = _child_geounet(a.scene, a.out, a.chip, a.stride, a.labels, a.workers)
    print("RESULT " + json.dumps(res))


# --------------------------------------------------------------------------- parent


def _prepare_cache(scene: Path) -> str:
    """Flush dirty pages, drop the page cache if allowed, then read the scene once (warm)."""
    os.sync()
    note = "page cache dropped, then scene pre-read (warm)"
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        note = "could not drop the page cache: scene pre-read (warm)"
    with open(scene, "rb") as f:
        while f.read(1 << 24):
            pass
    return note


def _dir_size(path: Path) -> tuple[int, int]:
    """``(number of .tif files, total bytes)`` under ``path``."""
    n, total = 0, 0
    for p in path.rglob("*"):
        if p.is_file():
            total += p.stat().st_size
            n += p.suffix == ".tif"
    return n, total


def _busy_cpu_s() -> float:
    """CPU seconds all processes have used since boot (from ``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _wait_quiet(limit_s: float, window_s: int = 5, busy_max: float = 0.15) -> float:
    """Wait until other processes use < ``busy_max`` of the CPUs for ``window_s`` seconds.

    Returns the seconds waited (at most about ``limit_s``); a shared machine's other jobs
    otherwise take cores from the threaded contenders mid-run.
    """
    t0, quiet = time.perf_counter(), 0
    ncpu = os.cpu_count() or 1
    while quiet < window_s and time.perf_counter() - t0 < limit_s:
        b0 = _busy_cpu_s()
        time.sleep(1.0)
        quiet = quiet + 1 if (_busy_cpu_s() - b0) / ncpu < busy_max else 0
    return time.perf_counter() - t0


def _run(name: str, cmd: list[str], log: Path, scene: Path, env: dict[str, str]) -> dict:
    note = _prepare_cache(scene)
    with open(log, "w") as out:
        busy0, t0 = _busy_cpu_s(), time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        wall, busy = time.perf_counter() - t0, _busy_cpu_s() - busy0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"{name} failed (exit {proc.returncode}):\n{text[-3000:]}")
    result: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    cpu = ru.ru_utime + ru.ru_stime
    return {
        "name": name,
        "wall_s": wall,
        "inner_s": result.get("inner_s"),
        "cpu_s": cpu,
        "other_cpu_s": max(busy - cpu, 0.0),
        "rss_mb": ru.ru_maxrss / 1024,  # Linux: kilobytes
        "chips": result.get("chips"),
        "cache": note,
    }


def _check_chip(scene: Path, chips: list[Path], chip: int) -> str:
    """Each tool's chip at grid (0, 1) must equal the scene window."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(scene) as ds:
        ref = ds.read(window=Window(chip, 0, chip, chip))
    for p in chips:
        with rasterio.open(p) as ds:
            if not np.array_equal(ds.read(), ref):
                return f"MISMATCH in {p}"
    return f"chip (0, 1) of {len(chips)} outputs equals the scene window"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=8192, help="scene height and width in pixels")
    p.add_argument("--chip", type=int, default=512, help="chip size in pixels")
    p.add_argument("--stride", type=int, help="chip stride (default: the chip size)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="scene cache + outputs")
    p.add_argument("--keep", action="store_true", help="keep the chip outputs")
    p.add_argument("--drop-scene", action="store_true", help="delete the cached scene at the end")
    p.add_argument("--no-labels", action="store_true", help="skip the geounet + labels line")
    p.add_argument("--no-extras", action="store_true", help="skip the 1-thread and MT extras")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the fastest of each is kept")
    p.add_argument(
        "--compare-path",
        type=Path,
        help="also time the geounet package found in this folder (A/B a change: a copy of the "
        "repo root holding a modified geounet/)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="before each run wait up to S seconds for the other processes to go quiet",
    )
    a = p.parse_args()
    stride = a.stride or a.chip
    if a.size % a.chip or stride != a.chip:
        # gdal_retile keeps short edge tiles where geounet shifts the last chip inward, so
        # only exact layouts compare 1:1.
        print("note: size not a multiple of chip or stride != chip: layouts differ at the edge")
    a.workdir.mkdir(parents=True, exist_ok=True)
    scene = a.workdir / f"scene_{a.size}.tif"
    labels = a.workdir / f"labels_{a.size}.gpkg"
    me = [sys.executable, str(Path(__file__).resolve()), "--child"]
    if not scene.exists() or not labels.exists():
        # In a child: the parent's peak RSS is the floor of every child's ru_maxrss (Linux
        # keeps the pre-exec high-water mark), so the parent must stay small.
        t0 = time.perf_counter()
        print(f"generating {scene} and {labels.name} ...", flush=True)
        gen = [*me, "generate", "--scene", str(scene), "--size", str(a.size), "--chip", "0"]
        subprocess.run([*gen, "--stride", "0", "--labels", str(labels)], check=True)
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    runs_dir = Path(tempfile.mkdtemp(prefix="runs-", dir=a.workdir))
    common = ["--scene", str(scene), "--chip", str(a.chip), "--stride", str(stride)]
    zstd = ["-co", "COMPRESS=ZSTD", "-co", "ZSTD_LEVEL=1", "-co", "PREDICTOR=2"]
    tiled = ["-co", "TILED=YES", "-co", "BLOCKXSIZE=256", "-co", "BLOCKYSIZE=256"]
    base_env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    # (name, command, output folder or None, environment)
    plan: list[tuple[str, list[str], Path | None, dict[str, str]]] = []

    def geounet(name: str, tag: str, extra: tuple[str, ...] = (), env: dict | None = None) -> None:
        out = runs_dir / tag
        cmd = [*me, "geounet", *common, "--out", str(out), *extra]
        plan.append((name, cmd, out, env or base_env))

    def retile(name: str, tag: str, co: list[str]) -> None:
        out = runs_dir / tag
        cmd = [SYSTEM_PYTHON, GDAL_RETILE, "-q", "-ps", str(a.chip), str(a.chip), *co]
        if stride != a.chip:
            cmd += ["-overlap", str(a.chip - stride)]
        plan.append((name, [*cmd, "-targetDir", str(out), str(scene)], out, base_env))

    plan.append(("I/O floor (read + encode)", [*me, "floor", *common], None, base_env))
    plan.append(("plain read (threads)", [*me, "plain", *common], None, base_env))
    geounet("geounet tile_scene", "geounet")
    if a.compare_path:
        env = {**base_env, "PYTHONPATH": str(a.compare_path.resolve())}
        geounet("geounet (compare-path)", "geounet_compare", env=env)
    retile("gdal_retile zstd", "retile_zstd", [*tiled, *zstd])
    retile("gdal_retile default", "retile_default", [])
    if not a.no_extras:
        plan.append(
            ("plain read (1 thread)", [*me, "plain", *common, "--workers", "1"], None, base_env)
        )
        retile(
            "gdal_retile zstd threads",
            "retile_zstd_mt",
            [*tiled, *zstd, "-co", "NUM_THREADS=ALL_CPUS"],
        )
    if not a.no_labels:
        geounet("geounet + labels", "geounet_labels", ["--labels", str(labels)])

    t_all = time.perf_counter()
    load0 = os.getloadavg()
    results: dict[str, dict] = {}
    digits = len(str(max(a.size // a.chip, 1)))
    try:
        for rnd in range(a.repeat):
            for name, cmd, out, env in plan:
                print(f"round {rnd + 1}/{a.repeat}: {name} ...", flush=True)
                if out is not None:
                    shutil.rmtree(out, ignore_errors=True)
                    if GDAL_RETILE in cmd:
                        out.mkdir()
                if a.wait_quiet:
                    waited = _wait_quiet(a.wait_quiet)
                    print(f"  waited {waited:.0f} s for a quiet machine", flush=True)
                r = _run(name, cmd, runs_dir / f"{out.name if out else 'plain'}.log", scene, env)
                if out is not None:
                    n_tif, nbytes = _dir_size(out)
                    r["out_mb"] = nbytes / 1e6
                    r["chips"] = r["chips"] or n_tif
                walls = [*results.get(name, {}).get("wall_all", []), r["wall_s"]]
                inners = [*results.get(name, {}).get("inner_all", []), r["inner_s"] or 0.0]
                if name not in results or r["wall_s"] < results[name]["wall_s"]:
                    results[name] = r
                results[name]["wall_all"], results[name]["inner_all"] = walls, inners
            if rnd == 0:
                check = _check_chip(
                    scene,
                    [
                        runs_dir
                        / "geounet"
                        / "images"
                        / f"scene_{a.size}_r000000_c{a.chip:06d}.tif",
                        runs_dir
                        / "retile_zstd"
                        / f"scene_{a.size}_{1:0{digits}d}_{2:0{digits}d}.tif",
                    ],
                    a.chip,
                )  # rasterio imported only now: it cannot raise a child's RSS floor
    finally:
        if not a.keep:
            shutil.rmtree(runs_dir, ignore_errors=True)
        if a.drop_scene:
            scene.unlink(missing_ok=True)
            labels.unlink(missing_ok=True)
    load1 = os.getloadavg()

    raw_mb = a.size * a.size * BANDS * 2 / 1e6
    scene_mb = scene.stat().st_size / 1e6 if scene.exists() else float("nan")
    print()
    print(
        f"scene: {a.size}x{a.size} px, {BANDS} bands uint16 ({raw_mb:.0f} MB raw, "
        f"{scene_mb:.0f} MB DEFLATE), chip {a.chip} stride {stride}; {os.cpu_count()} CPUs; "
        f"{results[plan[0][0]]['cache']}"
    )
    print(
        f"wall: fastest of {a.repeat} round(s); 'others' = CPU s used by other processes during "
        f"the run (load average {load0[0]:.1f} before, {load1[0]:.1f} after)"
    )
    print(f"check: {check}")
    print(
        f"{'contender':<26}{'wall s':>8}{'inner s':>9}{'CPU s':>8}{'others':>8}{'MB/s':>7}"
        f"{'peak RSS MB':>12}{'chips':>7}{'out MB':>8}"
    )
    for r in results.values():
        inner = f"{r['inner_s']:.2f}" if r["inner_s"] is not None else "-"
        out_mb = f"{r['out_mb']:.0f}" if "out_mb" in r else "-"
        print(
            f"{r['name']:<26}{r['wall_s']:>8.2f}{inner:>9}{r['cpu_s']:>8.1f}{r['other_cpu_s']:>8.1f}"
            f"{raw_mb / r['wall_s']:>7.0f}{r['rss_mb']:>12.0f}{r['chips']:>7}{out_mb:>8}"
        )

    def ratio(num: str, den: str, note: str) -> None:
        if num in results and den in results:
            w = results[num]["wall_s"] / results[den]["wall_s"]
            c = results[num]["cpu_s"] / results[den]["cpu_s"]
            print(f"{num + ' / ' + den:<50}{w:>6.2f}x wall {c:>6.2f}x CPU  {note}")

    def inner_ratio(num: str, den: str, note: str) -> None:
        if num in results and den in results and results[den]["inner_s"]:
            spread_n, spread_d = results[num]["inner_all"], results[den]["inner_all"]
            r = statistics.median(spread_n) / statistics.median(spread_d)
            print(
                f"{num + ' / ' + den + ' (inner)':<50}{r:>6.2f}x      medians; "
                f"{num} {min(spread_n):.2f}-{max(spread_n):.2f} s, {den} "
                f"{min(spread_d):.2f}-{max(spread_d):.2f} s  {note}"
            )

    print()
    ratio(
        "geounet tile_scene", "I/O floor (read + encode)", "HEADLINE: over the I/O floor (<= 1.3)"
    )
    inner_ratio("geounet tile_scene", "I/O floor (read + encode)", "the same, tiling calls only")
    ratio("geounet tile_scene", "plain read (threads)", "over reading the windows only")
    ratio("gdal_retile zstd", "geounet tile_scene", "gdal_retile, same codec, 1 thread")
    ratio("gdal_retile default", "geounet tile_scene", "gdal_retile uncompressed output")
    ratio("gdal_retile zstd threads", "geounet tile_scene", "GDAL NUM_THREADS=ALL_CPUS")
    ratio("geounet + labels", "geounet tile_scene", "label masks on top")
    ratio("gdal_retile zstd", "geounet (compare-path)", "headline for --compare-path")
    ratio("geounet tile_scene", "geounet (compare-path)", "speed-up of --compare-path")
    print(f"geounet peak RSS: {results['geounet tile_scene']['rss_mb']:.0f} MB")
    print(f"total bench time: {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
