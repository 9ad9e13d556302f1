"""Benchmark the U-Net family: parameters, GFLOP per megapixel, CPU megapixels per second.

Usage::

    python bench/models.py [--size 256] [--batch 1] [--runs 5] [--budget-s 10] [--quick]

Every model is built from the registry with its default options (``model_options(name)``),
13 input bands (Sentinel-2) and 4 classes (other, field, water, building):

* ``unet``, ``residual_unet``, ``attention_unet``: depth 4, base 64 (64 -> 1024), BatchNorm,
  transposed convolutions, same padding;
* ``unet_plus_plus``: depth 4, base 32 (the paper's width), no deep supervision;
* ``unet3d``: depth 4, base 32, a stack of T = 4 dates (``B x 13 x 4 x H x W``), collapsed to one
  ``B x 4 x H x W`` map; its megapixels are those of the output map (one map per 4 dates);
* ``efficient_unet``: EfficientNet-B0 encoder (random weights), decoder (256, 128, 64, 32, 16).

Method: fp32, eval mode, ``torch.inference_mode``, model and input in channels_last
(channels_last_3d for ``unet3d``), a chip of ``size x size`` pixels, ``batch`` chips per call.
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one forward on the meta
device (convolutions and matrix products; a multiply-add counts 2) and divided by the output
megapixels. Speed: one warm-up call, then the median of up to ``runs`` timed calls (timing stops
once a model has used ``--budget-s`` seconds, after at least one call), in output megapixels/s.
``--quick`` uses 128 x 128 chips and 2 runs (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from geounet.models import create_model, list_models

IN_CHANNELS = 13
NUM_CLASSES = 4
DATES = 4  # unet3d input stack


def make_input(name: str, batch: int, size: int) -> torch.Tensor:
    if name == "unet3d":
        x = torch.randn(batch, IN_CHANNELS, DATES, size, size)
        return x.to(memory_format=torch.channels_last_3d)
    return torch.randn(batch, IN_CHANNELS, size, size).to(memory_format=torch.channels_last)


def count_flops(name: str, batch: int, size: int) -> int:
    """FLOPs of one forward, counted on the meta device (shapes only, no compute)."""
    model = create_model(name, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES)
    model = model.to("meta").eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(make_input(name, batch, size).to("meta"))
    return counter.get_total_flops()


def time_model(model: torch.nn.Module, x: torch.Tensor, runs: int, budget_s: float) -> float:
    """Median seconds per call after one warm-up call; stops early past ``budget_s``."""
    times: list[float] = []
    with torch.inference_mode():
        model(x)
        while len(times) < runs and (not times or sum(times) < budget_s):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(name: str, *, size: int, batch: int, runs: int, budget_s: float) -> dict:
    torch.manual_seed(0)
    model = create_model(name, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES).eval()
    layout = torch.channels_last_3d if name == "unet3d" else torch.channels_last
    model = model.to(memory_format=layout)
    x = make_input(name, batch, size)
    megapixels = batch * size * size / 1e6
    flops = count_flops(name, batch, size)
    seconds = time_model(model, x, runs, budget_s)
    return {
        "name": name,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflop_per_mp": flops / 1e9 / megapixels,
        "mp_per_s": megapixels / seconds,
        "ms_per_call": seconds * 1e3,
    }


def format_table(rows: list[dict], *, size: int, batch: int) -> str:
    lines = [
        f"| model | params (M) | GFLOP/MP | CPU MP/s | ms per {batch}x{size}x{size} |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['params_m']:.2f} | {row['gflop_per_mp']:.1f} | "
            f"{row['mp_per_s']:.3f} | {row['ms_per_call']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="chip height and width (px)")
    parser.add_argument("--batch", type=int, default=1, help="chips per forward call")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per model (at most)")
    parser.add_argument(
        "--budget-s", type=float, default=10.0, help="stop timing a model after this many seconds"
    )
    parser.add_argument("--quick", action="store_true", help="128 px, 2 runs: a smoke test")
    parser.add_argument("--models", nargs="*", default=None, help="subset of model names")
    args = parser.parse_args(argv)
    size, runs = (128, 2) if args.quick else (args.size, args.runs)
    names = args.models or list_models()
    rows = [
        bench_model(name, size=size, batch=args.batch, runs=runs, budget_s=args.budget_s)
        for name in names
    ]
    header = (
        f"fp32, channels_last, inference_mode, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {IN_CHANNELS} bands -> {NUM_CLASSES} classes, "
        f"unet3d with T={DATES}\n\n"
    )
    sys.stdout.write(header + format_table(rows, size=size, batch=args.batch) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
