"""Spatial cross-validation: K spatially disjoint folds of chips, a model (and a forest) per fold.

Folds are drawn from the same spatial blocks as the tiling split (``split_block_chips`` x
``split_block_chips`` chips, per scene when the index has a ``scene`` column), never from single
chips: neighbouring chips are correlated, so a random per-chip split would score a model on
ground it has all but seen. Blocks are shuffled with the seed and dealt greedily to the fold
holding the fewest labelled pixels so far, so folds carry similar amounts of labels. Every
chip of the index takes part, whatever its tiling split (the tiling's buffer chips included).

The buffer rule (the tiling split's rule): a chip that overlaps, in pixels, a chip of another
fold would put the same pixels in two folds, so the chip of the lower fold number becomes
``buffer`` and belongs to no fold. Every other chip is in exactly one fold, so over the K runs
every labelled non-buffer chip is a test chip exactly once (with ``stride == chip_size`` no
chip overlaps and there is no buffer).

Run ``k`` (1-based) tests on fold ``k``, picks its best epoch on fold ``k + 1`` (wrapping) and
trains on the others. :func:`cross_validate` writes into ``out_dir``::

    metrics.json          per fold: chips per split, U-Net and forest metrics on the test fold;
                          summary: mean and standard deviation (ddof=1) of every metric
    folds.gpkg            layer "folds": the chips with their fold (0 = buffer), for QGIS
    fold_<k>/chips/       the chips folder of run k: its own index.gpkg (the split column
                          re-drawn, paths pointing into the original folder) and JSON files
    fold_<k>/             model.safetensors, metrics.json, logs/, plots/ of run k
                          (:func:`geounet.training.fit`; removed with ``keep_models=False``)

The U-Net and the forest are scored on exactly the same pixels: every labelled pixel of the
test fold's chips (label 255, i.e. unlabelled and nodata, left out), by one function
(:func:`geounet.evaluate.metrics_from_confusion`). Band statistics stay those of the whole
chips set: they are unsupervised and hold no label.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geounet._files import write_errors, write_text_atomic
from geounet.baseline import ForestOptions
from geounet.chips import CLASSES_FILE, STATS_FILE, TILING_FILE, ChipsFolder
from geounet.errors import ConfigError, LabelError, OutputError

log = logging.getLogger(__name__)

__all__ = [
    "FOLD_BUFFER",
    "CrossValidationResult",
    "assign_folds",
    "check_output",
    "cross_validate",
    "fold_splits",
    "summarize_folds",
    "write_fold_chips",
]

FOLD_BUFFER = 0
"""Fold number of chips left out of every fold because they overlap a chip of another fold."""

_COPIED = (STATS_FILE, CLASSES_FILE, TILING_FILE)


@dataclass(frozen=True)
class CrossValidationResult:
    """What :func:`cross_validate` produced.

    Attributes:
        out_dir: The output folder.
        folds: Chip id -> fold number (1..K, 0 = buffer).
        per_fold: Per run: ``fold``, ``chips`` per split, ``unet`` and (with a baseline)
            ``random_forest`` metrics on the test fold.
        summary: Model name -> metric -> ``{"mean", "std", "n"}``.
        metrics_path: ``metrics.json``.
        seconds: Wall time of the whole cross-validation.
    """

    out_dir: Path
    folds: dict[str, int]
    per_fold: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, float | int | None]]]
    metrics_path: Path
    seconds: float


def _labelled(frame: Any) -> np.ndarray:
    """Labelled pixels per chip (all pixels minus the ignored ones; 0 without counts)."""
    if "px_ignore" not in frame:
        return np.zeros(len(frame), np.int64)
    total = frame["height"].to_numpy() * frame["width"].to_numpy()
    return np.asarray(total - frame["px_ignore"].to_numpy(), dtype=np.int64)


def _scenes(frame: Any) -> list[str]:
    """Scene of each chip: the index's ``scene`` column when there is one (many-scene sets)."""
    return [str(s) for s in frame["scene"]] if "scene" in frame else [""] * len(frame)


def assign_folds(index: Any, folds: int, *, block_px: int, seed: int = 0) -> dict[str, int]:
    """Deal the chips of a chip index into ``folds`` spatially disjoint folds.

    Args:
        index: The chip index (:func:`geounet.tiling.read_index`): ``chip_id``, ``row_off``,
            ``col_off``, ``height``, ``width``, optionally ``scene`` and ``px_ignore``.
        folds: Number of folds K (>= 2).
        block_px: Side of a spatial block in pixels (``split_block_chips`` x stride); a chip
            belongs to the block holding its top-left pixel.
        seed: Seed of the block order.

    Returns:
        Chip id -> fold number ``1..K``, or :data:`FOLD_BUFFER` (0) for a chip that overlaps
        a chip of a higher fold.

    Raises:
        ConfigError: ``folds < 2``, ``block_px < 1`` or fewer blocks than folds.
    """
    if folds < 2:
        raise ConfigError(f"folds must be >= 2 for cross-validation, got {folds}.")
    if block_px < 1:
        raise ConfigError(f"block_px must be >= 1, got {block_px}.")
    ids = [str(c) for c in index["chip_id"]]
    rows, cols = index["row_off"].to_numpy(int), index["col_off"].to_numpy(int)
    heights, widths = index["height"].to_numpy(int), index["width"].to_numpy(int)
    scenes, labelled = _scenes(index), _labelled(index)
    block_of = [
        (s, r // block_px, c // block_px) for s, r, c in zip(scenes, rows, cols, strict=True)
    ]
    blocks = sorted(set(block_of))
    if len(blocks) < folds:
        raise ConfigError(
            f"{len(blocks)} spatial blocks cannot make {folds} folds; use fewer folds or a "
            "smaller split block (tile with a smaller --split-block)."
        )
    weight: dict[tuple[str, int, int], int] = dict.fromkeys(blocks, 0)
    for blk, n in zip(block_of, labelled, strict=True):
        weight[blk] += int(n)
    rng = np.random.default_rng(seed)
    pixels, count = [0] * folds, [0] * folds
    fold_of_block: dict[tuple[str, int, int], int] = {}
    for k in rng.permutation(len(blocks)):
        blk = blocks[k]
        # The emptiest fold by labels, then by blocks: folds end up with similar label counts.
        f = min(range(folds), key=lambda i: (pixels[i], count[i], i))
        fold_of_block[blk] = f + 1
        pixels[f] += weight[blk]
        count[f] += 1
    drawn = [fold_of_block[blk] for blk in block_of]
    final = list(drawn)
    # Overlapping chips are at most one bucket of the largest chip size apart.
    bh, bw = int(heights.max()), int(widths.max())
    buckets: dict[tuple[str, int, int], list[int]] = {}
    for i, (s, r, c) in enumerate(zip(scenes, rows, cols, strict=True)):
        buckets.setdefault((s, r // bh, c // bw), []).append(i)
    for i, (s, r, c) in enumerate(zip(scenes, rows, cols, strict=True)):
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                for j in buckets.get((s, r // bh + dr, c // bw + dc), ()):
                    overlaps = (
                        rows[j] < r + heights[i] and r < rows[j] + heights[j]
                        and cols[j] < c + widths[i] and c < cols[j] + widths[j]
                    )  # fmt: skip
                    if overlaps and drawn[j] > drawn[i]:
                        final[i] = FOLD_BUFFER
    return dict(zip(ids, final, strict=True))


def fold_splits(folds: Mapping[str, int], run: int, k: int) -> dict[str, str]:
    """The train/val/test/buffer split of every chip in run ``run`` (1-based) of ``k``.

    Run ``run`` tests on fold ``run``, validates on the next fold (wrapping) and trains on the
    rest; buffer chips stay ``buffer``.
    """
    val = run % k + 1
    names = {run: "test", val: "val", FOLD_BUFFER: "buffer"}
    return {chip: names.get(f, "train") for chip, f in folds.items()}


def write_fold_chips(chips_dir: str | Path, splits: Mapping[str, str], out_dir: str | Path) -> Path:
    """Write a chips folder whose index re-draws the splits and points at ``chips_dir``'s files.

    Args:
        chips_dir: The original chips folder.
        splits: Chip id -> ``train``/``val``/``test``/``buffer``.
        out_dir: The fold's chips folder (created; its index holds absolute chip paths, so it
            stays valid while the original folder stays where it is).

    Returns:
        ``out_dir``.
    """
    src, out = Path(chips_dir).resolve(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        shutil.copyfile(src / name, out / name)
    frame = ChipsFolder(Path(src)).index()
    frame["split"] = [splits[str(c)] for c in frame["chip_id"]]
    for column in ("image", "label"):
        frame[column] = [str(src / p) for p in frame[column]]
    with write_errors(out / "index.gpkg"):
        frame.to_file(
            out / "index.gpkg", layer="chips", driver="GPKG", dataset_options={"VERSION": "1.2"}
        )
    return out


def _flat(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The summarised numbers of an ``evaluate`` metrics dict: means, accuracy, per class."""
    mean = metrics["mean"]
    out: dict[str, float | None] = {
        "miou": mean["iou"], "mf1": mean["f1"], "oa": metrics["overall_accuracy"],
    }  # fmt: skip
    for name, scores in metrics["per_class"].items():
        out[f"iou_{name}"], out[f"f1_{name}"] = scores["iou"], scores["f1"]
    return out


def summarize_folds(
    per_fold: Sequence[Mapping[str, Any]], models: Sequence[str]
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Mean and standard deviation (ddof=1) of every metric over the folds, per model.

    A metric that is ``None`` in a fold (a class absent from its test chips) is left out of
    that metric's mean; ``n`` says over how many folds it was taken.
    """
    summary: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for name in models:
        flats = [_flat(f[name]) for f in per_fold if name in f]
        keys = list(dict.fromkeys(k for flat in flats for k in flat))
        summary[name] = {}
        for key in keys:
            values = [v for flat in flats if (v := flat.get(key)) is not None]
            n = len(values)
            summary[name][key] = {
                "mean": float(np.mean(values)) if n else None,
                "std": float(np.std(values, ddof=1)) if n > 1 else None,
                "n": n,
            }
    return summary


def check_output(out_dir: str | Path, *, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder without ``overwrite``, as a cross-validation output.

    Callers that train first (``geounet train --folds``) check before training.

    Raises:
        OutputError: ``out_dir`` is a file, or a non-empty folder and not ``overwrite``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is a file; give a folder path.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputError(
            f"{out} is not empty; pass --overwrite to replace the cross-validation there "
            "or choose another --out."
        )


def _check_out(out: Path, overwrite: bool) -> None:
    check_output(out, overwrite=overwrite)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror}; choose another --out.") from exc


def _block_px(chips_dir: Path) -> int:
    """Spatial block side in pixels from ``tiling.json``: split block chips x stride."""
    return ChipsFolder.open(chips_dir).block_px()


def _score_fold(
    fold_chips: Path, model_path: Path, baseline: ForestOptions | None, batch_size: int
) -> dict[str, Any]:
    """U-Net and forest metrics on every labelled pixel of the fold's test chips."""
    from geounet.baseline import predict_chips, train_forest
    from geounet.data import ChipDataset
    from geounet.evaluate import metrics_from_confusion
    from geounet.modelfile import load_model_file
    from geounet.training import confusion_matrix, evaluate_chips

    loaded = load_model_file(model_path)
    # The model's own input recipe (reflectance scale, offset, index channels), as predict
    # applies it: the folder's plain statistics would feed a recipe model the wrong input.
    test = ChipDataset(fold_chips, "test", recipe=loaded.metadata.input_recipe())
    scheme = test.info.classes
    confusion = evaluate_chips(loaded.model, test, batch_size=batch_size).confusion
    scores: dict[str, Any] = {"unet": metrics_from_confusion(confusion, scheme.names)}
    if baseline is not None:
        forest = train_forest(fold_chips, split="train", options=baseline)
        pred, ref = predict_chips(forest, fold_chips, [r[0] for r in test.records])
        cm = confusion_matrix(pred, ref, num_classes=scheme.num_classes)
        scores["random_forest"] = metrics_from_confusion(cm, scheme.names)
        scores["random_forest"]["baseline"] = forest.summary()
    return scores


def _write_fold_map(chips_dir: Path, folds: Mapping[str, int], path: Path) -> None:
    frame = ChipsFolder(Path(chips_dir)).index()
    frame["fold"] = [folds[str(c)] for c in frame["chip_id"]]
    frame = frame[["chip_id", "fold", *(c for c in ("scene",) if c in frame), "geometry"]]
    with write_errors(path):
        frame.to_file(path, layer="folds", driver="GPKG", dataset_options={"VERSION": "1.2"})


def cross_validate(
    chips_dir: str | Path,
    out_dir: str | Path,
    *,
    folds: int = 5,
    options: Any = None,
    baseline: ForestOptions | None = None,
    keep_models: bool = True,
    overwrite: bool = False,
) -> CrossValidationResult:
    """Train and score one model per spatial fold (and the forest on the same pixels).

    Args:
        chips_dir: A chips folder with labels (``geounet tile --labels ...``).
        out_dir: Output folder (layout in the module docstring).
        folds: Number of folds K (>= 3; 5 or 10 is usual).
        options: :class:`geounet.training.TrainingOptions` of every run (its seed also draws
            the folds); defaults when None.
        baseline: Also fit and score the per-pixel random forest with these options.
        keep_models: Keep each run's model file, logs and plots; ``False`` keeps the scores
            only.
        overwrite: Replace an earlier cross-validation in ``out_dir``.

    Returns:
        The fold of every chip, the per-fold metrics and their mean and spread.

    Raises:
        GeounetError: A bad chips folder, too few blocks for ``folds``, a fold without
            labelled test chips, or an output folder in the way, before any training.
    """
    from geounet.modelfile import json_ready
    from geounet.training import TrainingOptions, fit

    options = options or TrainingOptions()
    if folds < 3:
        raise ConfigError(
            f"cross-validation needs folds >= 3 (one tests, one picks the epoch, the rest "
            f"train), got {folds}."
        )
    chips, out = Path(chips_dir), Path(out_dir)
    start = time.perf_counter()
    index = ChipsFolder(Path(chips)).index()
    if "label" not in index:
        raise LabelError(f"chips folder {chips} has no labels; tile with --labels.")
    assignment = assign_folds(index, folds, block_px=_block_px(chips), seed=options.seed)
    labelled = dict(zip(map(str, index["chip_id"]), _labelled(index) > 0, strict=True))
    for k in range(1, folds + 1):
        if not any(labelled[c] for c, f in assignment.items() if f == k):
            raise LabelError(
                f"fold {k} of {folds} holds no labelled chip; use fewer folds or a smaller "
                "split block."
            )
    _check_out(out, overwrite)
    _write_fold_map(chips, assignment, out / "folds.gpkg")
    per_fold: list[dict[str, Any]] = []
    for k in range(1, folds + 1):
        splits = fold_splits(assignment, k, folds)
        fold_dir = out / f"fold_{k}"
        fold_chips = write_fold_chips(chips, splits, fold_dir / "chips")
        log.info("cross-validation run %d of %d", k, folds)
        result = fit(fold_chips, fold_dir, options=options)
        if result.model_path is None:  # a non-zero DDP rank: rank 0 scores
            continue
        scores = _score_fold(fold_chips, result.model_path, baseline, options.batch_size)
        counts = {
            s: sum(v == s for v in splits.values()) for s in ("train", "val", "test", "buffer")
        }
        per_fold.append({"fold": k, "chips": counts, "best_epoch": result.best_epoch, **scores})
        if not keep_models:
            shutil.rmtree(fold_dir)
    models = ["unet", *(["random_forest"] if baseline is not None else [])]
    summary = summarize_folds(per_fold, models)
    seconds = time.perf_counter() - start
    doc = {
        "folds": folds,
        "seed": options.seed,
        "scored": "every labelled pixel of each test fold's chips",
        "std": "sample standard deviation over folds (ddof=1)",
        "summary": summary,
        "per_fold": per_fold,
        "fold_of_chip": assignment,
        "seconds": round(seconds, 1),
    }
    path = write_text_atomic(out / "metrics.json", json.dumps(json_ready(doc), indent=2) + "\n")
    miou = summary["unet"]["miou"]
    log.info(
        "%d-fold cross-validation: U-Net mIoU %.3f +- %.3f in %.0f s",
        folds, miou["mean"] or math.nan, miou["std"] or math.nan, seconds,
    )  # fmt: skip
    return CrossValidationResult(out, assignment, per_fold, summary, path, seconds)
