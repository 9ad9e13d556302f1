"""Benchmark: the default U-Net training vs a per-pixel random forest on the bundled sample.

What is measured
----------------
1. The bundled Brandenburg Sentinel-2 scene (13 bands, 1536 x 768 px at 10 m) is tiled with the
   OSM class map and the ``tile`` section of ``configs/train_sample.yaml`` (128 px chips,
   spatial split in 2 x 2-chip blocks, 70/15/15, seed 0) into a temporary folder.
2. ``geounet.training.fit`` trains with the ``train`` section of the same file (the default
   training config). Its wall time is reported; the target is < 10 minutes on a 2-core CPU.
   The best epoch is chosen on validation mIoU (checkpoint selection; nothing else looks at
   the validation split).
3. The per-pixel random forest of ``geounet.baseline`` (100 trees, n_jobs=2, seed 0) is trained
   on labelled pixels of the *train* split (a uniform subsample of ``--rf-pixels``), with the
   same 13 bands as raw values (trees do not care about normalisation) and the same ignore rule
   (label 255, which tiling writes on nodata pixels, excluded).
4. Both are scored on ALL labelled pixels of the *val* split with one function
   (``geounet.training.confusion_matrix`` + ``pixel_metrics``): mIoU over the 4 classes,
   per-class IoU, overall accuracy. The U-Net is scored from the written model file.

The target: U-Net val mIoU >= RF val mIoU + 0.05, and U-Net training < 10 min. The exit status
is 0 when both hold. Results go to ``WORKDIR/results.json``.

Usage::

    python bench/train_vs_rf.py                     # about 7 minutes on a 2-core CPU
    python bench/train_vs_rf.py --workdir /tmp/x --keep
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# GNU OpenMP threads spin while waiting; on a busy CPU that slowed training steps 10x. It must be
# set before torch loads (geounet train sets it the same way).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "train_sample.yaml"
TARGET_GAIN = 0.05
TARGET_SECONDS = 600


def tile(config: Path, chips: Path) -> float:
    from geounet.config import TileConfig, load_section
    from geounet.tiling import tile_scene

    cfg = load_section(config, "tile", {"out": chips}, TileConfig)
    start = time.perf_counter()
    result = tile_scene(**cfg.tiling_kwargs(), overwrite=True)
    print(f"tiled {result.chips_written} chips, splits {result.split_counts}", flush=True)
    return time.perf_counter() - start


def train_unet(config: Path, chips: Path, out: Path):
    from geounet.config import load_train_config
    from geounet.training import fit

    cfg = load_train_config(config, {"chips": chips, "out": out, "progress_bar": False})
    print(f"training {cfg.model.name} {cfg.model.options}, up to {cfg.epochs} epochs", flush=True)
    start = time.perf_counter()
    result = fit(**cfg.fit_kwargs(), overwrite=True)
    return result, time.perf_counter() - start


def score_unet(model_path: Path, chips: Path) -> np.ndarray:
    from geounet.data import ChipDataset
    from geounet.modelfile import load_model_file
    from geounet.training import evaluate_chips

    loaded = load_model_file(model_path)
    val = ChipDataset(chips, "val", stats=loaded.metadata.normalization)
    return evaluate_chips(loaded.model, val, batch_size=8).confusion


def train_and_score_rf(chips: Path, pixels: int, trees: int) -> tuple[np.ndarray, float, int]:
    """The library's forest (geounet.baseline) on the train chips, scored on the val pixels."""
    from geounet.baseline import ForestOptions, predict_chips, train_forest
    from geounet.data import ChipDataset
    from geounet.training import confusion_matrix

    start = time.perf_counter()
    forest = train_forest(chips, options=ForestOptions(trees=trees, max_pixels=pixels, n_jobs=2))
    val_ids = [chip_id for chip_id, _, _ in ChipDataset(chips, "val").records]
    pred, ref = predict_chips(forest, chips, val_ids)
    seconds = time.perf_counter() - start
    k = forest.scheme.num_classes
    return confusion_matrix(pred, ref, num_classes=k), seconds, forest.available_pixels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the chips and the model")
    parser.add_argument("--rf-pixels", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="geounet-bench-train-")
        args.workdir = Path(tmp.name)
    chips, out = args.workdir / "chips", args.workdir / "model"
    load_start = os.getloadavg()
    tile_seconds = tile(args.config, chips)

    from geounet.data import read_chips_info
    from geounet.training import pixel_metrics

    names = read_chips_info(chips).classes.names
    result, train_seconds = train_unet(args.config, chips, out)
    unet = pixel_metrics(score_unet(result.model_path, chips), names)
    print(f"U-Net trained in {train_seconds:.0f} s; scoring the random forest", flush=True)
    rf_confusion, rf_seconds, rf_available = train_and_score_rf(chips, args.rf_pixels, args.trees)
    rf = pixel_metrics(rf_confusion, names)
    load_end = os.getloadavg()

    gain = unet["miou"] - rf["miou"]
    ok = gain >= TARGET_GAIN and train_seconds < TARGET_SECONDS
    rows = [("mIoU", "miou"), ("overall accuracy", "oa"), ("mean F1", "mf1")]
    rows += [(f"IoU {n}", f"iou_{n}") for n in names]
    print(f"\n{'validation split':<20}{'U-Net':>10}{'RF':>10}{'diff':>10}")
    for label, key in rows:
        print(f"{label:<20}{unet[key]:>10.3f}{rf[key]:>10.3f}{unet[key] - rf[key]:>+10.3f}")
    print(
        f"\nval pixels scored: {int(unet['pixels'])} (U-Net) / {int(rf['pixels'])} (RF)"
        f"\nU-Net: {result.epochs} epochs, best epoch {(result.best_epoch or 0) + 1}, "
        f"fit {result.seconds:.0f} s, fit + model file + plots {train_seconds:.0f} s "
        f"(target < {TARGET_SECONDS} s)"
        f"\nRF: {args.trees} trees on {min(args.rf_pixels, rf_available)} of {rf_available} "
        f"labelled train pixels, fit + predict {rf_seconds:.0f} s"
        f"\ntiling {tile_seconds:.0f} s; load average {load_start[0]:.1f} -> {load_end[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
        f"\nU-Net mIoU - RF mIoU = {gain:+.3f} (target >= +{TARGET_GAIN}): "
        + ("PASS" if ok else "FAIL")
    )
    report = {
        "unet": unet, "rf": rf, "miou_gain": gain, "pass": ok,
        "unet_train_seconds": train_seconds, "unet_fit_seconds": result.seconds,
        "unet_epochs": result.epochs, "unet_best_epoch": result.best_epoch,
        "rf_seconds": rf_seconds, "rf_train_pixels": min(args.rf_pixels, rf_available),
        "tile_seconds": tile_seconds, "load_average": [load_start[0], load_end[0]],
        "cpus": os.cpu_count(),
    }  # fmt: skip
    (args.workdir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.keep or tmp is None:
        print(f"kept {args.workdir}")
    elif tmp is not None:
        tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
