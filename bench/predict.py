"""Benchmark of whole-scene prediction: overhead over the model, breakdown, memory.

1. Overhead: ``predict_scene`` end to end on a generated 13-band uint16 scene versus the
   model-only forward over the same number of chips (predict's own torch engine: same chip
   size, batch, memory layout, softmax and threads, input already in memory). The two are
   interleaved in this one process, ``--repeats`` rounds (the order alternates each round),
   and the median, min and max of each are printed with the ratio of the medians and the
   spread of the per-round ratios, so one noisy round on a shared machine does not decide
   the figure. Target on a CPU: end-to-end <= 1.10x model-only (median of 5).
2. Breakdown: one more end-to-end run with predict's stages timed on the main thread
   (waiting for chips from the reader, the forward pass, blending, handing strips to the
   writer, the COG copy with overviews and the preview), plus the CPU seconds of reading and
   decoding and of normalising chips (on the reader thread, overlapping the forward pass).
3. Memory: peak RSS of ``predict_scene`` (each in a fresh subprocess) on a 2048^2 and an 8192^2
   scene with a 1x1 model and the same options. Target: <= 1.3x (memory must not follow scene
   size). ``--no-memory`` skips it.

The thread settings (torch intra-op threads, OpenMP wait policy, GDAL threads, reader
threads) and the load average are printed with the figures.

Run: ``python bench/predict.py [--quick] [--repeats 5] [--workdir /tmp/geounet-bench]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import geounet  # first: it sets the OpenMP wait policy before torch loads

BANDS = tuple(f"B{i:02d}" for i in range(1, 14))


def make_scene(path: Path, size: int) -> Path:
    """A 13-band uint16 scene with smooth structure plus noise (cached)."""
    import rasterio
    from affine import Affine

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 13, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(10, 0, 300000, 0, -10, 5900000), "tiled": True,
        "blockxsize": 512, "blockysize": 512, "compress": "deflate", "predictor": 2,
    }  # fmt: skip
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.descriptions = BANDS
        for r0 in range(0, size, 512):
            yy, xx = np.mgrid[r0 : r0 + 512, 0:size].astype(np.float32)
            base = 1500 + 800 * np.sin(xx / 97.0) * np.cos(yy / 131.0)
            block = np.stack([base * (0.6 + 0.05 * b) for b in range(13)])
            block += rng.normal(0, 40, block.shape).astype(np.float32)
            dst.write(
                np.clip(block, 0, 65535).astype(np.uint16), window=((r0, r0 + 512), (0, size))
            )
    tmp.rename(path)
    return path


def build_model(kind: str):
    import torch

    from geounet.models import create_model

    torch.manual_seed(0)
    if kind == "tiny":
        return torch.nn.Conv2d(13, 4, 1)
    return create_model(
        "unet", in_channels=13, num_classes=4, base_channels=16, depth=4, batch_norm=True
    )


def spec(chip: int):
    from geounet.classes import ClassScheme
    from geounet.inference import ModelSpec

    return ModelSpec(BANDS, np.full(13, 1500, np.float32), np.full(13, 500, np.float32),
                     ClassScheme.default(), chip)  # fmt: skip


def options(chip: int, overlap: int, batch: int):
    from geounet.inference import PredictOptions

    return PredictOptions(chip_size=chip, overlap=overlap, batch_size=batch, device="cpu")


def run_predict(model, scene: Path, out: Path, chip: int, overlap: int, batch: int) -> float:
    from geounet.inference import predict_scene

    t0 = time.perf_counter()
    predict_scene(model, scene, out, metadata=spec(chip), options=options(chip, overlap, batch))
    return time.perf_counter() - t0


def model_only(engine, n_chips: int, chip: int, batch: int) -> float:
    """The same number of chips through predict's engine from memory: the compute floor."""
    x = np.random.default_rng(0).standard_normal((batch, 13, chip, chip), dtype=np.float32)
    t0 = time.perf_counter()
    for start in range(0, n_chips, batch):
        engine(x[: min(batch, n_chips - start)])
    return time.perf_counter() - t0


@contextlib.contextmanager
def instrumented(record: dict):
    """Add up the main thread's seconds in predict's stages (see the module docstring)."""
    from geounet import engines, inference, stitching

    patches = [
        (engines.TorchEngine, "__call__", "forward"),
        (stitching.BlendMerger, "add", "blend"),
        (inference._StripWriter, "put", "strip to writer"),
        (inference._StripWriter, "close", "writer drain + close"),
        (inference, "_publish", "COG + overviews + preview"),
        (inference, "_next_batch", "waiting for chips"),
    ]
    patches = [p for p in patches if hasattr(p[0], p[1])]
    originals = [getattr(owner, attr) for owner, attr, _ in patches]

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                record[key] = record.get(key, 0.0) + time.perf_counter() - t0

        return wrapper

    for (owner, attr, key), fn in zip(patches, originals, strict=True):
        setattr(owner, attr, timed(fn, key))
    try:
        yield
    finally:
        for (owner, attr, _), fn in zip(patches, originals, strict=True):
            setattr(owner, attr, fn)


@contextlib.contextmanager
def reader_cpu(record: dict):
    """Add up the CPU seconds of reading (decode) and of normalising chips, on any thread."""
    from geounet import inference
    from geounet.raster import SceneInfo

    patches = [
        (SceneInfo, "read_valid", "reader CPU: read + decode"),
        (inference, "_prepare_chip", "reader CPU: normalise chips"),
    ]
    originals = [getattr(owner, attr) for owner, attr, _ in patches]

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                record[key] = record.get(key, 0.0) + time.thread_time() - t0

        return wrapper

    for (owner, attr, key), fn in zip(patches, originals, strict=True):
        setattr(owner, attr, timed(fn, key))
    try:
        yield
    finally:
        for (owner, attr, _), fn in zip(patches, originals, strict=True):
            setattr(owner, attr, fn)


def child(args: argparse.Namespace) -> None:
    """Run one prediction and print its time and this process's peak RSS as JSON."""
    model = build_model(args.model).eval()
    seconds = run_predict(
        model, Path(args.scene), Path(args.out), args.chip, args.overlap, args.batch
    )
    # VmHWM is this process's own peak: ru_maxrss would carry the parent's peak over from fork.
    status = Path("/proc/self/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"seconds": seconds, "rss_mb": hwm_kb / 1024}))


def in_subprocess(scene: Path, out: Path, kind: str, chip: int, overlap: int, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--scene", str(scene), "--out", str(out),
           "--model", kind, "--chip", str(chip), "--overlap", str(overlap), "--batch", str(batch)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}  min {min(values):.3f}  max {max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "geounet-bench"))
    parser.add_argument(
        "--quick", action="store_true", help="1024^2 / 4096^2 instead of 2048^2 / 8192^2"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS subprocesses")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scene")
    parser.add_argument("--out")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--chip", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import torch

    from geounet.engines import TorchEngine
    from geounet.grid import ChipGrid
    from geounet.raster import open_scene

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    small, large = (1024, 4096) if args.quick else (2048, 8192)
    s_small = make_scene(work / f"scene_{small}.tif", small)
    chip, overlap, batch = args.chip, args.overlap, args.batch
    model = build_model("unet").eval()
    engine = TorchEngine(model, options(chip, overlap, batch))
    n_chips = len(ChipGrid.from_scene(open_scene(s_small), chip, chip - overlap))
    model_only(engine, batch, chip, batch)  # warm-up: allocator, thread pool, page cache
    run_predict(model, s_small, work / "pred_unet", chip, overlap, batch)
    print(
        f"geounet {Path(geounet.__file__).parent}; torch {torch.__version__}: "
        f"{torch.get_num_threads()} intra-op threads (after predict), OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f} before"
    )
    with contextlib.suppress(ImportError):
        from geounet.inference import cpu_thread_plan

        print(f"predict thread plan on this machine: {cpu_thread_plan()}")
    print(f"scene {small}^2 x 13 bands, chip {chip}, overlap {overlap}, batch {batch}, "
          f"{n_chips} chips, unet base 16 depth 4; {args.repeats} interleaved rounds")  # fmt: skip

    t_model, t_e2e = [], []
    for r in range(args.repeats):
        order = ("model", "e2e") if r % 2 == 0 else ("e2e", "model")
        for what in order:
            if what == "model":
                t_model.append(model_only(engine, n_chips, chip, batch))
            else:
                t_e2e.append(run_predict(model, s_small, work / "pred_unet", chip, overlap, batch))
        print(f"  round {r + 1}: model-only {t_model[-1]:.2f} s, end-to-end {t_e2e[-1]:.2f} s",
              flush=True)  # fmt: skip
    ratios = [e / m for e, m in zip(t_e2e, t_model, strict=True)]
    mp = small * small / 1e6
    med_m, med_e = statistics.median(t_model), statistics.median(t_e2e)
    print("\n| measure | seconds | rate |\n|---|---|---|")
    print(f"| model-only forward, {n_chips} chips | {spread(t_model)} | "
          f"{n_chips * chip * chip / 1e6 / med_m:.2f} chip-MP/s |")  # fmt: skip
    print(f"| end-to-end predict_scene {small}^2 | {spread(t_e2e)} | "
          f"{mp / med_e:.2f} scene-MP/s |")  # fmt: skip
    print(
        f"\nend-to-end / model-only = {med_e / med_m:.3f} (medians; per-round ratios "
        f"{spread(ratios)})  target <= 1.10"
    )

    record: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with instrumented(record), reader_cpu(cpu):
        t0 = time.perf_counter()
        run_predict(model, s_small, work / "pred_unet", chip, overlap, batch)
        total = time.perf_counter() - t0
    print(f"\nbreakdown of one more end-to-end run ({total:.2f} s wall, main thread):")
    for key, seconds in record.items():
        print(f"  {key:<28}{seconds:>7.2f} s  {seconds / total:>6.1%}")
    rest = total - sum(record.values())
    print(f"  {'other (open, checks, ...)':<28}{rest:>7.2f} s  {rest / total:>6.1%}")
    for key, seconds in cpu.items():  # on the reader thread, overlapping the forward pass
        print(f"  {key:<28}{seconds:>7.2f} CPU-s (overlapped)")
    print(f"load average {os.getloadavg()[0]:.1f} after")

    if args.no_memory:
        return
    s_large = make_scene(work / f"scene_{large}.tif", large)
    r_small = in_subprocess(s_small, work / "pred_s", "tiny", chip, overlap, batch)
    r_large = in_subprocess(s_large, work / "pred_l", "tiny", chip, overlap, batch)
    print("\n| scene | seconds | peak RSS MB |\n|---|---|---|")
    print(f"| {small}^2 x 13 bands | {r_small['seconds']:.1f} | {r_small['rss_mb']:.0f} |")
    print(f"| {large}^2 x 13 bands | {r_large['seconds']:.1f} | {r_large['rss_mb']:.0f} |")
    print(
        f"\npeak RSS {large}^2 / {small}^2 = {r_large['rss_mb'] / r_small['rss_mb']:.3f}  "
        f"(target <= 1.3; scene is {(large / small) ** 2:.0f}x larger)"
    )


if __name__ == "__main__":
    main()
