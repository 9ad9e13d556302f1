"""Benchmark of whole-scene prediction: overhead over the model, and memory versus scene size.

1. Overhead: end-to-end ``predict_scene`` time on a generated 13-band uint16 scene versus the
   model-only forward time over the same number of chips (same chip size, batch, dtype, threads),
   measured in this run. Target on a CPU: end-to-end <= 1.10x model-only.
2. Memory: peak RSS of ``predict_scene`` (each in a fresh subprocess) on a 2048^2 and an 8192^2
   scene with the same model and options. Target: <= 1.3x (memory must not follow scene size).

Run: ``python bench/predict.py [--quick] [--workdir /tmp/geounet-bench]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

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


def run_predict(scene: Path, out: Path, kind: str, chip: int, overlap: int, batch: int) -> float:
    from geounet.inference import PredictOptions, predict_scene

    model = build_model(kind).eval()
    t0 = time.perf_counter()
    predict_scene(
        model,
        scene,
        out,
        metadata=spec(chip),
        options=PredictOptions(chip_size=chip, overlap=overlap, batch_size=batch, device="cpu"),
    )
    return time.perf_counter() - t0


def model_only(n_chips: int, kind: str, chip: int, batch: int) -> float:
    """Forward + softmax of the same number of chips from memory: the compute floor."""
    import torch

    model = build_model(kind).eval()
    x = torch.randn(batch, 13, chip, chip)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n_chips, batch):
            n = min(batch, n_chips - start)
            torch.softmax(model(x[:n]), 1).numpy()
    return time.perf_counter() - t0


def child(args: argparse.Namespace) -> None:
    """Run one prediction and print its time and this process's peak RSS as JSON."""
    seconds = run_predict(
        Path(args.scene), Path(args.out), args.model, args.chip, args.overlap, args.batch
    )
    # VmHWM is this process's own peak: ru_maxrss would carry the parent's peak over from fork.
    status = Path("/proc/self/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    rss_mb = hwm_kb / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb}))


def in_subprocess(scene: Path, out: Path, kind: str, chip: int, overlap: int, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--scene", str(scene), "--out", str(out),
           "--model", kind, "--chip", str(chip), "--overlap", str(overlap), "--batch", str(batch)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default="/tmp/geounet-bench")
    parser.add_argument(
        "--quick", action="store_true", help="1024^2 / 4096^2 instead of 2048^2 / 8192^2"
    )
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

    from geounet.grid import ChipGrid
    from geounet.raster import open_scene

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    small, large = (1024, 4096) if args.quick else (2048, 8192)
    s_small = make_scene(work / f"scene_{small}.tif", small)
    s_large = make_scene(work / f"scene_{large}.tif", large)
    chip, overlap, batch = args.chip, args.overlap, args.batch
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, chip {chip}, overlap {overlap}, batch {batch}"
    )

    n_chips = len(ChipGrid.from_scene(open_scene(s_small), chip, chip - overlap))
    model_only(batch, "unet", chip, batch)  # warm-up
    t_model = model_only(n_chips, "unet", chip, batch)
    t_e2e = run_predict(s_small, work / "pred_unet", "unet", chip, overlap, batch)
    mp = small * small / 1e6
    print("\n| measure | seconds | MP/s |\n|---|---|---|")
    print(
        f"| model-only forward, {n_chips} chips (unet base 16) | {t_model:.2f} | {n_chips * chip * chip / 1e6 / t_model:.2f} chip-MP/s |"
    )
    print(f"| end-to-end predict_scene {small}^2 | {t_e2e:.2f} | {mp / t_e2e:.2f} scene-MP/s |")
    print(f"\nend-to-end / model-only = {t_e2e / t_model:.3f}  (target <= 1.10)")

    r_small = in_subprocess(s_small, work / "pred_s", "tiny", chip, overlap, batch)
    r_large = in_subprocess(s_large, work / "pred_l", "tiny", chip, overlap, batch)
    print("\n| scene | seconds | peak RSS MB |\n|---|---|---|")
    print(f"| {small}^2 x 13 bands | {r_small['seconds']:.1f} | {r_small['rss_mb']:.0f} |")
    print(f"| {large}^2 x 13 bands | {r_large['seconds']:.1f} | {r_large['rss_mb']:.0f} |")
    print(
        f"\npeak RSS {large}^2 / {small}^2 = {r_large['rss_mb'] / r_small['rss_mb']:.3f}  (target <= 1.3; "
        f"scene is {(large / small) ** 2:.0f}x larger)"
    )


if __name__ == "__main__":
    main()
