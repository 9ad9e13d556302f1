"""Benchmark: model width/depth and chip size at a fixed CPU budget, U-Net vs forest on folds.

What is measured
----------------
1. The bundled scene is tiled at each chip size of ``--chips`` (default 64, 128, 256) with
   split blocks of 256 px (4, 2 and 1 chips), so every chip size gets the same spatial blocks
   and the same folds of :func:`geounet.folds.assign_folds` (seed 0, ``--k`` folds).
2. Each model of ``--models`` (``depth x base_channels``, default 3x8, 3x16, 4x16) trains on
   every chip size with the demo job's other ``train`` settings, one torch thread, and a
   fixed CPU budget: a probe times a few training steps in CPU seconds
   (``time.process_time``, which other processes on a shared machine do not inflate), and
   the run gets ``budget / seconds-per-epoch`` epochs (10 at least; patience off), with the
   validation pass included in the estimate. So a wider model gets fewer epochs, not more
   time.
3. For each of ``--folds`` (default folds 1 and 2 of 5: a screening, not the 5-fold claim),
   the U-Net and the per-pixel random forest (trained on the same train chips) are scored on
   every labelled pixel of the test fold, as ``bench/quality.py`` does.

Prints one row per model and chip size: epochs given, CPU seconds used, U-Net mIoU per fold
and mean, the forest's mean and the gain. Results go to ``OUT/grid.json``.

Usage::

    python bench/grid.py [--budget 120] [--models 3x8,3x16] [--chips 64,128] [--folds 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BLOCK_PX = 256


def tile(out: Path, chip: int) -> Path:
    """The bundled scene tiled at ``chip`` px with 256 px split blocks (reused when present)."""
    from geounet.classes import ClassMap
    from geounet.sample_data import brandenburg_s2
    from geounet.tiling import TilingOptions, tile_scene

    chips = out / f"chips_{chip}"
    if (chips / "index.gpkg").is_file():
        return chips
    sample = brandenburg_s2()
    options = TilingOptions(
        chip_size=chip, stride=chip, split_fractions=(0.7, 0.15, 0.15),
        split_block_chips=max(1, BLOCK_PX // chip), seed=0,
    )  # fmt: skip
    tile_scene(
        sample.band_paths, chips, labels=sample.labels, overwrite=True,
        class_map=ClassMap.from_yaml(sample.class_map), options=options,
    )  # fmt: skip
    return chips


def epoch_cpu_seconds(chips: Path, options: object, steps: int = 4) -> float:
    """CPU seconds of one epoch (train steps plus the validation forward), from a probe."""
    import math

    import torch

    from geounet._task import ChipDataModule, SegmentationTask
    from geounet.data import collate_samples, read_chips_info
    from geounet.training import _input_recipe

    info = read_chips_info(chips)
    recipe = _input_recipe(info, options)  # type: ignore[arg-type]
    data = ChipDataModule(chips, batch_size=options.batch_size, recipe=recipe, cache_mb=0)  # type: ignore[attr-defined]
    arch = {"name": options.model, "in_channels": recipe.in_channels,  # type: ignore[attr-defined]
            "num_classes": info.classes.num_classes, "options": dict(options.model_options)}  # type: ignore[attr-defined]  # fmt: skip
    task = SegmentationTask(arch, info.classes.names, loss=options.loss, channels_last=True)  # type: ignore[attr-defined]
    opt = torch.optim.AdamW(task.model.parameters(), lr=1e-3)
    n = min(options.batch_size, len(data.train_set))  # type: ignore[attr-defined]
    batch = collate_samples([data.train_set[i] for i in range(n)])
    task.loss_fn(task(batch["image"]), batch["mask"]).backward()  # warm-up
    start = time.process_time()
    for _ in range(steps):
        opt.zero_grad()
        task.loss_fn(task(batch["image"]), batch["mask"]).backward()
        opt.step()
    per_step = (time.process_time() - start) / steps
    with torch.no_grad():
        start = time.process_time()
        task.eval()(batch["image"])
        per_val_batch = time.process_time() - start
    train_steps = math.ceil(len(data.train_set) / options.batch_size)  # type: ignore[attr-defined]
    val_batches = math.ceil(len(data.val_set) / options.batch_size)  # type: ignore[attr-defined]
    return train_steps * per_step + val_batches * per_val_batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/geounet-grid"))
    parser.add_argument("--budget", type=float, default=120.0, help="CPU seconds per run")
    parser.add_argument("--models", default="3x8,3x16,4x16", help="depth x base_channels")
    parser.add_argument("--chips", default="64,128,256", help="chip sizes")
    parser.add_argument("--folds", default="1,2", help="test folds to run (of --k)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--job", type=Path, default=None, help="job file (default: the demo)")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from dataclasses import replace

    import torch

    from geounet.baseline import ForestOptions
    from geounet.config import load_job_config
    from geounet.folds import _block_px, _score_fold, assign_folds, fold_splits, write_fold_chips
    from geounet.sample_data import demo_job_path
    from geounet.tiling import read_index
    from geounet.training import fit

    torch.set_num_threads(1)
    job = load_job_config(args.job or demo_job_path(), out=args.out / "job")
    base = replace(job.train.fit_kwargs()["options"], progress_bar=False, threads=1, patience=None)
    test_folds = [int(f) for f in args.folds.split(",")]
    rows, forests = [], {}
    for chip in (int(c) for c in args.chips.split(",")):
        chips = tile(args.out, chip)
        assignment = assign_folds(read_index(chips), args.k, block_px=_block_px(chips), seed=0)
        for spec in args.models.split(","):
            depth, width = (int(v) for v in spec.split("x"))
            options = replace(base, model_options={**base.model_options, "depth": depth,
                                                   "base_channels": width})  # fmt: skip
            per_epoch = epoch_cpu_seconds(chips, options)
            options = replace(options, epochs=max(10, int(args.budget / per_epoch)))
            row = {"model": spec, "chip": chip, "epochs": options.epochs, "folds": {}}
            cpu = 0.0
            for k in test_folds:
                fold_dir = args.out / f"{spec}_{chip}" / f"fold_{k}"
                fold_chips = write_fold_chips(chips, fold_splits(assignment, k, args.k),
                                              fold_dir / "chips")  # fmt: skip
                start = time.process_time()
                run = fit(fold_chips, fold_dir, options=options, overwrite=True)
                cpu += time.process_time() - start
                forest = None if (chip, k) in forests else ForestOptions(n_jobs=1)
                scores = _score_fold(fold_chips, run.model_path, forest, options.batch_size)  # type: ignore[arg-type]
                forests.setdefault((chip, k), scores.get("random_forest"))
                row["folds"][k] = {"unet": scores["unet"]["mean"]["iou"],
                                   "rf": forests[(chip, k)]["mean"]["iou"]}  # fmt: skip
            row["cpu_seconds"] = round(cpu / len(test_folds), 1)
            row["unet"] = sum(f["unet"] for f in row["folds"].values()) / len(test_folds)
            row["rf"] = sum(f["rf"] for f in row["folds"].values()) / len(test_folds)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\nfixed budget {args.budget:.0f} CPU s per run (1 thread); folds {args.folds} of {args.k}"
    )
    print(f"{'model':<7}{'chip':>5}{'epochs':>7}{'CPU s':>7}"
          + "".join(f"{'fold ' + str(k):>9}" for k in test_folds)
          + f"{'U-Net':>8}{'RF':>8}{'gain':>8}")  # fmt: skip
    for r in rows:
        cells = "".join(f"{r['folds'][k]['unet']:>9.3f}" for k in test_folds)
        print(f"{r['model']:<7}{r['chip']:>5}{r['epochs']:>7}{r['cpu_seconds']:>7.0f}{cells}"
              f"{r['unet']:>8.3f}{r['rf']:>8.3f}{r['unet'] - r['rf']:>+8.3f}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grid.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
