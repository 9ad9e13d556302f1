"""Benchmark: U-Net vs a per-pixel random forest on K spatial folds and on the demo's test split.

What is measured
----------------
1. The job (``configs/demo.yaml`` by default; ``--config`` for another) runs as ``geounet run``
   does, with ``evaluate.baseline: random_forest``: its evaluate stage scores the U-Net and the
   per-pixel random forest of :mod:`geounet.baseline` (100 trees, raw bands, trained on the
   train split chips) on the same test-split pixels with one function. Stages already up to
   date in ``--out`` are reused (``--force`` reruns them).
2. :func:`geounet.folds.cross_validate` deals the job's chips into ``--folds`` spatially
   disjoint folds of split blocks (chips overlapping another fold buffered), and for each fold
   trains the U-Net with the job's ``train`` settings on the other folds (the next fold picks
   the epoch) and the forest on the same train chips, and scores both on every labelled pixel
   of the test fold. It prints the mean +- sample std over folds of mIoU and per-class IoU.

Targets (issue 11): the demo job >= forest + 0.05 test mIoU; a longer job >= forest + 0.10 mean
over folds. The exit status is 0 when the fold mean gain reaches ``--target-gain`` (default
0.05). Results go to ``OUT/quality.json``.

Usage::

    python bench/quality.py [--out /tmp/geounet-quality] [--folds 5]
    python bench/quality.py --config configs/<longer job>.yaml --target-gain 0.10

On 2 CPU cores a demo-sized fold trains about as long as the demo (~200 s): 5 folds ~17 min.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _row(label: str, unet: float | None, rf: float | None, spread: str = "") -> str:
    fmt = lambda v: f"{v:>8.3f}" if v is not None else f"{'-':>8}"  # noqa: E731
    diff = f"{unet - rf:>+8.3f}" if unet is not None and rf is not None else f"{'-':>8}"
    return f"{label:<18}{fmt(unet)}{fmt(rf)}{diff}{spread}"


def _print_split(metrics: dict) -> None:
    rf = metrics["baseline"]
    print(f"\n{'demo test split':<18}{'U-Net':>8}{'RF':>8}{'diff':>8}")
    print(_row("mIoU", metrics["mean"]["iou"], rf["mean"]["iou"]))
    for name in metrics["classes"]:
        print(_row(f"IoU {name}", metrics["per_class"][name]["iou"], rf["per_class"][name]["iou"]))
    print(f"(same {metrics['pixels_evaluated']} test pixels for both)")


def _print_folds(summary: dict, folds: int, classes: list[str]) -> None:
    unet, rf = summary["unet"], summary["random_forest"]

    def pm(s: dict) -> str:
        if s.get("mean") is None:
            return f"{'-':>16}"
        return f"{s['mean']:>8.3f} +- {s['std']:.3f}" if s.get("std") is not None else ""

    print(f"\n{folds}-fold spatial CV   {'U-Net (mean +- std)':>22}{'RF (mean +- std)':>22}")
    for key in ["miou", *(f"iou_{n}" for n in classes)]:
        label = "mIoU" if key == "miou" else key.replace("_", " ")
        print(f"{label:<18}{pm(unet.get(key, {})):>22}{pm(rf.get(key, {})):>22}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="job file (default: the demo)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/geounet-quality"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--target-gain", type=float, default=0.05)
    parser.add_argument("--force", action="store_true", help="rerun the job's stages")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from dataclasses import replace

    from geounet.baseline import ForestOptions
    from geounet.config import load_job_config
    from geounet.folds import cross_validate
    from geounet.job import run_job
    from geounet.sample_data import demo_job_path

    config = args.config or demo_job_path()
    job = load_job_config(
        config, out=args.out / "job", overrides={"evaluate.baseline": "random_forest"}
    )
    load_start = os.getloadavg()
    start = time.perf_counter()
    result = run_job(job, force=args.force)
    job_seconds = time.perf_counter() - start
    _print_split(result.metrics)

    options = replace(job.train.fit_kwargs()["options"], progress_bar=False)
    cv = cross_validate(
        result.output("tile", "chips"), args.out / "folds", folds=args.folds, options=options,
        baseline=ForestOptions(n_jobs=2), keep_models=False, overwrite=True,
    )  # fmt: skip
    classes = list(result.metrics["classes"])
    _print_folds(cv.summary, args.folds, classes)
    gain = cv.summary["unet"]["miou"]["mean"] - cv.summary["random_forest"]["miou"]["mean"]
    split_gain = result.metrics["mean"]["iou"] - result.metrics["baseline"]["mean"]["iou"]
    load_end = os.getloadavg()
    ok = gain >= args.target_gain
    print(
        "\nfold chips (train/val/test/buffer): "
        + "; ".join(
            f"{f['fold']}: {'/'.join(str(f['chips'][s]) for s in ('train', 'val', 'test', 'buffer'))}"
            for f in cv.per_fold
        )
        + f"\njob {job_seconds:.0f} s (stages reused when up to date); cross-validation "
        f"{cv.seconds:.0f} s; load average {load_start[0]:.1f} -> {load_end[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
        f"\ntest split gain {split_gain:+.3f}; fold mean gain {gain:+.3f} "
        f"(target >= +{args.target_gain}): " + ("PASS" if ok else "FAIL")
    )
    doc = {
        "config": str(config), "folds": args.folds, "test_split": {
            "unet": result.metrics["mean"]["iou"],
            "random_forest": result.metrics["baseline"]["mean"]["iou"], "gain": split_gain,
        },
        "cross_validation": cv.summary, "fold_gain": gain, "per_fold": cv.per_fold,
        "job_seconds": job_seconds, "cv_seconds": cv.seconds, "pass": ok,
    }  # fmt: skip
    (args.out / "quality.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
