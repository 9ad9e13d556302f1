"""PNG plots written next to a trained model: curves, confusion matrix, validation chips.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot: no display
is needed, pyplot's global figure list does not grow in long sessions, and a notebook's
backend (``%matplotlib inline``) is left as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geounet.classes import ClassScheme
from geounet.display import rgb_indexes

if TYPE_CHECKING:
    from geounet._validation import ChipEvaluation
    from geounet.data import ChipsInfo

log = logging.getLogger(__name__)


def new_figure(**kwargs: Any) -> Any:
    """A ``matplotlib.figure.Figure`` outside pyplot (saved with ``savefig``, then dropped)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def write_plots(
    out_dir: Path,
    *,
    metrics_csv: Path,
    evaluation: ChipEvaluation,
    info: ChipsInfo,
    best_epoch: int | None,
) -> dict[str, Path]:
    """Write ``curves.png``, ``confusion_matrix.png`` and ``val_samples.png`` into ``out_dir``.

    Returns:
        Plot name -> path, for the plots that could be drawn (curves need a metrics CSV,
        samples at least one kept chip).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    names = info.classes.names
    written: dict[str, Path] = {}
    if metrics_csv.is_file():
        written["curves"] = plot_curves(
            metrics_csv, out_dir / "curves.png", info.classes, best_epoch
        )
    written["confusion_matrix"] = plot_confusion(
        evaluation.confusion, names, out_dir / "confusion_matrix.png"
    )
    if evaluation.samples:
        written["val_samples"] = plot_samples(evaluation, info, out_dir / "val_samples.png")
    return written


def _epoch_table(metrics_csv: Path) -> Any:
    """Per-epoch values of a Lightning CSV log (the last non-empty value of each column)."""
    import pandas as pd

    frame = pd.read_csv(metrics_csv)
    frame = frame[frame["epoch"].notna()]
    return frame.groupby("epoch").last()


def plot_curves(metrics_csv: Path, path: Path, scheme: ClassScheme, best_epoch: int | None) -> Path:
    """Loss curves (train, val) and validation metrics per epoch, best epoch marked.

    Per-class IoU curves are dashed, in the class colours.
    """
    table = _epoch_table(metrics_csv)
    epochs = table.index.to_numpy() + 1
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(figsize=(13, 4.5), layout="constrained")
    ax_loss, ax_metric = fig.subplots(1, 2)
    for column, label in (("train_loss_epoch", "train"), ("val_loss", "validation")):
        if column in table:
            ax_loss.plot(epochs, table[column], marker=".", label=label)
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="loss")
    for column, label in (
        ("val_miou", "mean IoU"),
        ("val_mf1", "mean F1"),
        ("val_oa", "overall accuracy"),
    ):
        if column in table:
            ax_metric.plot(epochs, table[column], lw=2, label=label)
    for c in scheme.classes:
        column = f"val_iou_{c.name}"
        if column in table:
            colour = tuple(v / 255 for v in c.color)
            ax_metric.plot(epochs, table[column], "--", lw=1.2, color=colour, label=f"IoU {c.name}")
    ax_metric.set(title="Validation metrics", xlabel="epoch", ylabel="score", ylim=(0, 1))
    for ax in (ax_loss, ax_metric):
        if best_epoch is not None:
            ax.axvline(
                best_epoch + 1, color="k", ls=":", lw=1, label=f"best: epoch {best_epoch + 1}"
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_metric.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110)
    return path


def plot_confusion(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    title: str = "Validation confusion matrix",
) -> Path:
    """Row-normalised confusion matrix (recall per true class) with pixel counts."""
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(class_names)
    fig = new_figure(figsize=(1.3 * k + 3, 1.1 * k + 2.2))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{share[i, j]:.0%}\n{int(cm[i, j]):,}", ha="center", va="center",
                    color=colour, fontsize=8)  # fmt: skip
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted class", ylabel="true class")
    total = cm.sum()
    accuracy = np.trace(cm) / total if total else float("nan")
    ax.set_title(f"{title}\n{int(total):,} labelled pixels, accuracy {accuracy:.1%}")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _class_rgba(labels: np.ndarray, scheme: ClassScheme) -> np.ndarray:
    """An RGBA image of class ids (ignored pixels transparent, shown on a white axis)."""
    lut = np.zeros((256, 4), dtype=np.float32)
    for c in scheme.classes:
        lut[c.id] = (*(v / 255 for v in c.color), 1.0)
    return lut[labels.astype(np.int64).clip(0, 255)]


def plot_samples(evaluation: ChipEvaluation, info: ChipsInfo, path: Path) -> Path:
    """A panel of validation chips: true colour, label and prediction in class colours.

    True colour uses the chips' display bands (``tiling.json``; see
    :func:`geounet.display.rgb_indexes`), stretched between the 2nd and 98th percentile of each
    band (``stats.json``; the chip's own when the statistics lack them).
    """
    from matplotlib.patches import Patch

    scheme, norm = info.classes, info.normalization
    rgb_idx = rgb_indexes(info.bands, info.display_bands)
    rows = len(evaluation.samples)
    fig = new_figure(figsize=(9, 3.2 * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    for r, (chip_id, image, mask, pred) in enumerate(evaluation.samples):
        # Index channels (if any) follow the bands; only the bands are drawn.
        raw = norm.invert(image[: norm.count])[rgb_idx]
        if norm.p2 is not None and norm.p98 is not None:
            lo = np.asarray([norm.p2[i] for i in rgb_idx])[:, None, None]
            hi = np.asarray([norm.p98[i] for i in rgb_idx])[:, None, None]
        else:
            lo = np.percentile(raw, 2, axis=(1, 2), keepdims=True)
            hi = np.percentile(raw, 98, axis=(1, 2), keepdims=True)
        rgb = np.clip((raw - lo) / np.maximum(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0)
        labelled = mask != scheme.ignore_index
        correct = (
            float((pred[labelled] == mask[labelled]).mean()) if labelled.any() else float("nan")
        )
        panels = (
            (rgb, f"{chip_id}\ntrue colour ({', '.join(info.bands[i] for i in rgb_idx)})"),
            (_class_rgba(mask, scheme), "label (white: unlabelled)"),
            (_class_rgba(pred, scheme), f"prediction ({correct:.0%} of labelled px right)"),
        )
        for c, (img, title) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [
        Patch(facecolor=np.array(c.color) / 255, edgecolor="k", label=c.name)
        for c in scheme.classes
    ]
    handles.append(Patch(facecolor="white", edgecolor="k", label="unlabelled / ignore"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle("Validation chips: image, label, prediction")
    fig.savefig(path, dpi=100)
    return path
