"""Mosaic blocks on dask: wall time and peak RSS per worker, 1 vs 2 workers, and block overhead.

Builds an N x N mosaic (default 8192^2) of four overlapping synthetic 4-band scenes (a VRT), a
tiny seeded U-Net, and predicts it three ways: single-process ``predict_scene``, and
``predict_mosaic`` on a local cluster of 1 and of 2 worker processes. Prints wall times, their
ratios against the single-process run measured in the same run, each worker's peak RSS, and
the block overhead (chips run per block, halo and batch-mates included, against the chips of
the mosaic). Timings on a shared machine are noisy: read the ratios, not the seconds.

    python bench/mosaic.py [--size 8192] [--block-size 2048] [--chip 256] [--out DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from geounet.classes import ClassScheme
from geounet.data import Normalization
from geounet.distributed import ClusterOptions
from geounet.inference import PredictOptions
from geounet.modelfile import ModelMetadata, save_model_file
from geounet.models import create_model, describe_model
from geounet.mosaic import MosaicOptions, _setup, plan_blocks, predict_mosaic

BANDS = ("B02", "B03", "B04", "B08")


def _scenes(folder: Path, size: int) -> list[Path]:
    """Four scenes of (size/2 + 32)^2 px overlapping by 64 px, written in row strips."""
    half = size // 2 + 32
    rng = np.random.default_rng(0)
    paths = []
    for i, (row, col) in enumerate(
        ((0, 0), (0, size - half), (size - half, 0), (size - half,) * 2)
    ):
        path = folder / f"scene{i}.tif"
        t = Affine(10.0, 0.0, 330000.0 + 10 * col, 0.0, -10.0, 5822040.0 - 10 * row)
        profile = dict(driver="GTiff", width=half, height=half, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=t, tiled=True, compress="deflate")  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.descriptions = BANDS
            for r in range(0, half, 512):
                h = min(512, half - r)
                block = rng.integers(500, 5000, (4, h, half), dtype=np.uint16)
                dst.write(block, window=rasterio.windows.Window(0, r, half, h))
        paths.append(path)
    return paths


def _model(folder: Path, chip: int) -> Path:
    torch.manual_seed(0)
    net = create_model("unet", in_channels=4, num_classes=4, depth=2, base_channels=4).eval()
    meta = ModelMetadata(
        architecture=describe_model(net), bands=BANDS,
        normalization=Normalization((2750.0,) * 4, (1300.0,) * 4), classes=ClassScheme.default(),
        chip_size=chip, res=(10.0, 10.0),
    )  # fmt: skip
    return save_model_file(folder / "model.safetensors", net, meta)


def _single(model: Path, vrt: Path, out: Path, options: PredictOptions) -> tuple[float, float]:
    """predict_scene in a fresh process: (seconds, peak RSS in MiB)."""
    code = (
        "import resource, sys, time; from geounet.inference import predict_scene, PredictOptions;"
        f"o = PredictOptions(**{options.__dict__!r}); t = time.perf_counter();"
        f"predict_scene({str(model)!r}, {str(vrt)!r}, {str(out)!r}, options=o);"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    seconds, rss = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(seconds), int(rss) / 1024


def _mosaic(model, vrt, out, options, block_size, workers) -> tuple[float, list[float]]:
    """predict_mosaic on a new local cluster: (seconds, peak RSS in MiB of each worker)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     dashboard_address=None, env={"TQDM_DISABLE": "1"}) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        start = time.perf_counter()
        result = predict_mosaic(
            model, vrt, out, options=options, mosaic_options=MosaicOptions(block_size=block_size),
            cluster=ClusterOptions(scheduler=client),
        )  # fmt: skip
        seconds = time.perf_counter() - start
        assert result.ok, result.failed
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return seconds, [v / 1024 for v in peaks.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--chip", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-mosaic-"))
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    scenes = _scenes(root, args.size)
    model = _model(root, args.chip)
    print(f"mosaic {args.size}^2 px of 4 scenes written in {time.perf_counter() - t:.1f} s")
    options = PredictOptions(chip_size=args.chip, device="cpu", batch_size=4)
    # The VRT the runs share: the first mosaic run writes it into its folder.
    from geounet._mosaic_vrt import mosaic_vrt

    vrt = mosaic_vrt(scenes, root / "mosaic.vrt")
    from geounet.inference import ModelSpec
    from geounet.modelfile import read_model_metadata

    spec = ModelSpec.from_metadata(read_model_metadata(model))
    _, _, grid = _setup(spec, str(vrt), options)
    blocks = plan_blocks(grid, args.block_size, options.batch_size)
    run = sum(len(b.batches) * options.batch_size for b in blocks)
    print(
        f"{len(grid)} chips of {args.chip} px; {len(blocks)} blocks of {args.block_size} px run "
        f"{run} chips: block overhead {run / len(grid):.3f}x the chips (halo + batch-mates)"
    )
    single_s, single_rss = _single(model, vrt, root / "single", options)
    print(f"single-process predict_scene: {single_s:.1f} s, peak RSS {single_rss:.0f} MiB")
    for workers in (1, 2):
        seconds, peaks = _mosaic(model, vrt, root / f"mosaic{workers}", options, args.block_size,
                                 workers)  # fmt: skip
        rss = ", ".join(f"{p:.0f}" for p in peaks)
        print(
            f"predict_mosaic, {workers} worker(s): {seconds:.1f} s = {seconds / single_s:.2f}x "
            f"single-process; peak RSS per worker {rss} MiB"
        )
        with (
            rasterio.open(root / f"mosaic{workers}" / "classes.tif") as a,
            rasterio.open(root / "single" / "classes.tif") as b,
        ):
            same = all(
                np.array_equal(a.read(1, window=w), b.read(1, window=w))
                for _, w in a.block_windows(1)
            )
        print(f"  classes.tif equals the single-process map: {same}")
    print(f"outputs in {root}")


if __name__ == "__main__":
    main()
