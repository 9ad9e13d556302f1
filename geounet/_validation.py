"""Pixel metrics of a model over a split of chips: confusion matrix, IoU, F1, accuracy.

One confusion-matrix path serves the model file's summary, ``metrics.json`` and
``bench/train_vs_rf.py`` (which scores a random forest the same way), so every figure is
computed by the same code. :mod:`geounet.training` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from geounet.classes import ClassScheme
from geounet.data import ChipDataset, collate_samples


def confusion_matrix(
    pred: np.ndarray | Tensor,
    target: np.ndarray | Tensor,
    *,
    num_classes: int,
    ignore_index: int = 255,
) -> np.ndarray:
    """Confusion matrix ``C[true, predicted]`` (int64, ``K x K``) over non-ignored pixels.

    Raises:
        ValueError: If the shapes differ or a non-ignored value is outside ``0..K-1``.
    """
    p = np.asarray(pred.cpu() if isinstance(pred, Tensor) else pred).ravel().astype(np.int64)
    t = np.asarray(target.cpu() if isinstance(target, Tensor) else target).ravel().astype(np.int64)
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in size: {p.shape} vs {t.shape}.")
    keep = t != ignore_index
    p, t = p[keep], t[keep]
    if len(t) and (t.min() < 0 or t.max() >= num_classes or p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"class ids must be in 0..{num_classes - 1} (or {ignore_index}).")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def pixel_metrics(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """IoU, F1 and accuracy per class and averaged, from a ``C[true, predicted]`` matrix.

    Means average the classes present in the labels or the predictions (torchmetrics'
    ``macro``, so they equal the logged ``val_*`` values); a class absent from both has NaN
    per-class values. This flat form feeds training summaries; the ``evaluate`` stage's
    :func:`geounet.evaluate.metrics_from_confusion` gives the nested report (its means cover
    the classes present in the reference only).

    Returns:
        ``miou``, ``mf1``, ``macc`` (mean recall), ``oa`` (overall accuracy), ``pixels`` and per
        class ``iou_<name>``, ``f1_<name>``, ``acc_<name>`` (recall).
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    present = (tp + fp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / (tp + fp + fn), np.nan)
        f1 = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
        acc = np.where(present, np.where(tp + fn > 0, tp / (tp + fn), 0.0), np.nan)
    total = cm.sum()
    out = {
        "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "mf1": float(np.nanmean(f1)) if present.any() else float("nan"),
        "macc": float(np.nanmean(acc)) if present.any() else float("nan"),
        "oa": float(tp.sum() / total) if total else float("nan"),
        "pixels": float(total),
    }
    for k, name in enumerate(class_names):
        out[f"iou_{name}"], out[f"f1_{name}"], out[f"acc_{name}"] = (
            float(iou[k]), float(f1[k]), float(acc[k]),
        )  # fmt: skip
    return out


@dataclass(frozen=True)
class ChipEvaluation:
    """Predictions of a model over the chips of a dataset.

    Attributes:
        confusion: ``C[true, predicted]`` over every non-ignored pixel.
        samples: Up to ``keep`` chips as ``(chip_id, image, mask, pred)`` numpy arrays
            (image normalised ``C x H x W``), chosen for the number of classes they show.
    """

    confusion: np.ndarray
    samples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]


@torch.no_grad()
def evaluate_chips(
    model: torch.nn.Module, dataset: ChipDataset, *, batch_size: int = 8, keep: int = 0
) -> ChipEvaluation:
    """Run ``model`` (eval mode, on its device) over every chip of ``dataset``.

    Args:
        model: A segmentation model returning ``B x K x H x W`` logits.
        dataset: Chips with masks (e.g. ``ChipDataset(chips, "val")``).
        batch_size: Chips per forward pass.
        keep: Number of chips to return for display.

    Returns:
        The confusion matrix and the kept chips.
    """
    scheme: ClassScheme = dataset.info.classes
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_samples)
    k = scheme.num_classes
    confusion = np.zeros((k, k), dtype=np.int64)
    candidates = []
    for batch in loader:
        pred = model(batch["image"].to(device)).argmax(dim=1).cpu()
        mask = batch["mask"]
        confusion += confusion_matrix(pred, mask, num_classes=k, ignore_index=scheme.ignore_index)
        for i, chip_id in enumerate(batch["chip_id"]):
            m = mask[i].numpy()
            labelled = m != scheme.ignore_index
            score = (len(np.unique(m[labelled])), int(labelled.sum()))
            candidates.append((score, chip_id, batch["image"][i].numpy(), m, pred[i].numpy()))
        # Keep only the best few chips so memory does not grow with the dataset.
        candidates.sort(key=lambda c: (-c[0][0], -c[0][1], c[1]))
        del candidates[keep:]
    samples = [(cid, img, m, p) for _, cid, img, m, p in candidates[:keep]]
    return ChipEvaluation(confusion, samples)
