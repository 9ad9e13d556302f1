"""Benchmark: the demo job (configs/demo.yaml) vs a per-pixel random forest on the same split.

What is measured
----------------
1. The demo job runs from scratch (``run_job(..., force=True)``, exactly what ``geounet demo``
   runs): tile, train, predict, vectorize, evaluate, report. Its wall time is the figure the
   README quotes; the target is < 10 minutes on a 2-core CPU.
2. A ``sklearn.ensemble.RandomForestClassifier`` (100 trees, n_jobs=2, seed 0) is trained on the
   labelled pixels of the job's *train* split chips (a uniform subsample of ``--rf-pixels``),
   the same 13 bands (raw values: a forest is invariant to the per-band normalisation), label 255
   and nodata excluded. It predicts every valid pixel of the scene into a class raster.
3. Both class rasters are scored by the job's own ``evaluate_prediction`` against the same
   reference (``evaluate/reference_test.tif``: the held-out test split's labels), so the pixel
   metrics and the object metrics are computed by one function on the same pixels.

Exit status 0 when the U-Net's test mIoU beats the forest's and the job took < 10 minutes.

Usage::

    python bench/demo_vs_rf.py [--out /tmp/demo-bench]       # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

TARGET_SECONDS = 600


def train_pixels(chips: Path, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, bands)`` raw values and ``(n,)`` labels of labelled train-split pixels."""
    import rasterio

    from geounet.tiling import read_index

    index = read_index(chips)
    xs, ys = [], []
    for rec in index[index["split"] == "train"].itertuples():
        with rasterio.open(chips / rec.image) as img, rasterio.open(chips / rec.label) as lab:
            image, label = img.read(), lab.read(1)
        keep = label != 255  # tiling marks nodata and unlabelled pixels 255
        xs.append(image[:, keep].T)
        ys.append(label[keep])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) > limit:
        pick = np.random.default_rng(0).choice(len(y), size=limit, replace=False)
        x, y = x[pick], y[pick]
    return x, y


def predict_forest(forest, scene_paths: list[str], like: Path, out: Path) -> Path:
    """Predict every valid scene pixel and write a class raster tagged like the U-Net's."""
    import rasterio
    from rasterio.windows import Window

    from geounet.raster import open_scene

    scene = open_scene(scene_paths)
    height, width = scene.shape
    data, valid = scene.read_valid(Window(0, 0, width, height))
    classes = np.full((height, width), 255, np.uint8)
    classes[valid] = forest.predict(data[:, valid].T).astype(np.uint8)
    with rasterio.open(like) as src:
        profile, tags = src.profile, src.tags()
    profile.update(driver="GTiff", compress="deflate", tiled=True)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(classes, 1)
        dst.update_tags(**tags)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/geounet-demo-bench"))
    parser.add_argument("--rf-pixels", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from sklearn.ensemble import RandomForestClassifier

    from geounet.config import load_job_config
    from geounet.evaluate import evaluate_prediction
    from geounet.job import run_job
    from geounet.sample_data import demo_job_path

    job = load_job_config(demo_job_path(), out=args.out)
    load_start = os.getloadavg()
    start = time.perf_counter()
    result = run_job(job, force=True)
    job_seconds = time.perf_counter() - start
    stages = {s.name: round(s.seconds, 1) for s in result.stages}
    print(f"demo job: {job_seconds:.0f} s wall; stages {stages}", flush=True)

    start = time.perf_counter()
    x, y = train_pixels(result.output("tile", "chips"), args.rf_pixels)
    forest = RandomForestClassifier(n_estimators=args.trees, n_jobs=2, random_state=0).fit(x, y)
    rf_classes = predict_forest(
        forest, [str(p) for p in job.tile.scene], result.output("predict", "classes"),
        args.out / "rf_classes.tif",
    )  # fmt: skip
    rf_seconds = time.perf_counter() - start
    reference = result.output("evaluate", "reference")
    unet = result.metrics
    rf = evaluate_prediction(  # the job's own evaluation settings
        rf_classes, reference, iou_threshold=job.evaluate.iou_threshold,
        min_area_m2=job.evaluate.min_area_m2, object_classes=job.evaluate.object_classes,
    )  # fmt: skip
    load_end = os.getloadavg()

    names = unet["classes"]
    rows = [("mIoU", lambda m: m["mean"]["iou"]), ("mean F1", lambda m: m["mean"]["f1"]),
            ("overall accuracy", lambda m: m["overall_accuracy"])]  # fmt: skip
    rows += [(f"IoU {n}", lambda m, n=n: m["per_class"][n]["iou"]) for n in names]
    for cls in unet["objects"]["classes"]:
        rows.append((f"object F1 {cls}", lambda m, c=cls: m["objects"]["classes"][c]["f1"]))
    print(f"\n{'test split':<22}{'U-Net':>10}{'RF':>10}{'diff':>10}")
    table = {}
    for label, get in rows:
        a, b = get(unet), get(rf)
        table[label] = {"unet": a, "rf": b}
        fmt = lambda v: f"{v:>10.3f}" if v is not None else f"{'-':>10}"  # noqa: E731
        diff = f"{a - b:>+10.3f}" if a is not None and b is not None else f"{'-':>10}"
        print(f"{label:<22}{fmt(a)}{fmt(b)}{diff}")
    ok = unet["mean"]["iou"] > rf["mean"]["iou"] and job_seconds < TARGET_SECONDS
    print(
        f"\ntest pixels scored: {unet['pixels_evaluated']} (both)"
        f"\nRF: {args.trees} trees on {len(y)} train pixels, fit + whole-scene predict "
        f"{rf_seconds:.0f} s"
        f"\njob wall {job_seconds:.0f} s (target < {TARGET_SECONDS} s); load average "
        f"{load_start[0]:.1f} -> {load_end[0]:.1f} on {os.cpu_count()} CPUs: "
        + ("PASS" if ok else "FAIL")
    )
    report = {"job_seconds": job_seconds, "stage_seconds": stages, "rf_seconds": rf_seconds,
              "rf_train_pixels": len(y), "table": table, "pass": ok}  # fmt: skip
    (args.out / "demo_vs_rf.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
