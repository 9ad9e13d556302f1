"""Benchmark: onnx engine vs torch engine, end-to-end ``predict_scene`` on a CPU, same scene.

Both engines run the same pipeline (reader threads -> batches -> engine -> blend -> COG) on the
bundled 13-band Sentinel-2 sample scene (768 x 1536 px, per-band JP2 files) with the same
model: a 13-band U-Net (random weights; speed does not depend on them) saved as a model file and
exported with ``geounet export``. Each engine runs ``--repeats`` times after one warm-up; the
best time counts. The two class maps are compared as well. Prints a JSON line and a table.

Run: ``python bench/onnx_vs_torch.py [--base 16] [--depth 3] [--chip 256] [--repeats 2]``. (Not
``bench/onnx.py``: run as a script, that name would shadow the ``onnx`` package.)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_model(folder: Path, base: int, depth: int, chip: int) -> Path:
    import torch

    from geounet.classes import ClassScheme
    from geounet.data import Normalization
    from geounet.modelfile import ModelMetadata, save_model_file
    from geounet.models import create_model, describe_model
    from geounet.sample_data import SENTINEL2_BANDS

    torch.manual_seed(0)
    model = create_model("unet", in_channels=13, num_classes=4, depth=depth, base_channels=base)
    meta = ModelMetadata(
        architecture=describe_model(model), bands=tuple(SENTINEL2_BANDS),
        normalization=Normalization((1500.0,) * 13, (800.0,) * 13),
        classes=ClassScheme.default(), chip_size=chip, res=(10.0, 10.0),
        training={"note": "random weights (bench/onnx_vs_torch.py)"},
    )  # fmt: skip
    return save_model_file(folder / "model.safetensors", model.eval(), meta)


def time_engine(model: Path, scene: list, out: Path, repeats: int) -> tuple[float, list]:
    from geounet.inference import predict_scene

    times = []
    for i in range(repeats + 1):  # the first run warms caches (files, thread pools, allocator)
        start = time.perf_counter()
        predict_scene(str(model), scene, out, device="cpu")
        if i:
            times.append(time.perf_counter() - start)
    return min(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=16, help="U-Net base channels")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--chip", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch/ort threads")
    args = parser.parse_args()

    import rasterio
    import torch

    from geounet.export import export_onnx
    from geounet.sample_data import brandenburg_s2

    torch.set_num_threads(args.threads)
    scene = list(brandenburg_s2().band_paths)
    with tempfile.TemporaryDirectory(prefix="geounet-bench-onnx-") as tmp:
        folder = Path(tmp)
        model = make_model(folder, args.base, args.depth, args.chip)
        onnx_path = export_onnx(model, folder / "model.onnx")
        torch_s, torch_runs = time_engine(model, scene, folder / "torch", args.repeats)
        onnx_s, onnx_runs = time_engine(onnx_path, scene, folder / "onnx", args.repeats)
        with (
            rasterio.open(folder / "torch/classes.tif") as a,
            rasterio.open(folder / "onnx/classes.tif") as b,
        ):
            mismatch = float(np.mean(a.read(1) != b.read(1)))
            megapixels = a.width * a.height / 1e6
    result = {
        "scene_mp": megapixels, "chip": args.chip, "base": args.base, "depth": args.depth,
        "threads": args.threads, "torch_s": torch_s, "onnx_s": onnx_s,
        "torch_runs_s": torch_runs, "onnx_runs_s": onnx_runs,
        "onnx_over_torch": onnx_s / torch_s, "torch_mp_s": megapixels / torch_s,
        "onnx_mp_s": megapixels / onnx_s, "class_mismatch": mismatch,
    }  # fmt: skip
    print(json.dumps(result))
    print(f"{'engine':8} {'best s':>8} {'MP/s':>7}")
    print(f"{'torch':8} {torch_s:8.2f} {megapixels / torch_s:7.2f}")
    print(f"{'onnx':8} {onnx_s:8.2f} {megapixels / onnx_s:7.2f}")
    print(f"onnx / torch time: x{onnx_s / torch_s:.2f}; class maps differ on {mismatch:.2e}")


if __name__ == "__main__":
    main()
