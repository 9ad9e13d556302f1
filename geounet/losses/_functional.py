"""Functional core of the losses: pure functions of logits and targets (see the package docs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor

from geounet.errors import ConfigError

ClassWeights = Sequence[float] | Tensor | None


class LossMode(StrEnum):
    """How logits and targets are read.

    Attributes:
        BINARY: One logit channel and a sigmoid; target 0/1.
        MULTICLASS: One logit per class and a softmax; target class ids.
    """

    BINARY = "binary"
    MULTICLASS = "multiclass"


def _to_mode(mode: LossMode | str) -> LossMode:
    try:
        return LossMode(str(mode).lower())
    except ValueError:
        raise ConfigError(
            f"mode={mode!r} is not a loss mode; expected one of {[m.value for m in LossMode]}."
        ) from None


def _prepare(
    logits: Tensor, target: Tensor, mode: LossMode | str, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes; return float32 logits, the target (ignored -> 0) and the valid mask."""
    mode = _to_mode(mode)
    if logits.dim() < 3:
        raise ValueError(f"Expected logits B x K x H x W, got shape {tuple(logits.shape)}.")
    if target.dim() == logits.dim() and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"Target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}; "
            "expected the logits' shape without the class dim (B x H x W)."
        )
    channels = logits.shape[1]
    if mode == LossMode.BINARY and channels != 1:
        raise ValueError(
            f"Binary mode expects 1 logit channel, got {channels}; use mode='multiclass'."
        )
    if mode == LossMode.MULTICLASS and channels < 2:
        raise ValueError("Multiclass mode expects at least 2 logit channels; use mode='binary'.")
    if ignore_index is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    else:
        valid = target != ignore_index
    clean = torch.where(valid, target, torch.zeros_like(target)).long()
    return logits.float(), clean, valid


def _weights(class_weights: ClassWeights, count: int, like: Tensor) -> Tensor | None:
    """Class weights as a float tensor on ``like``'s device, checked against ``count``."""
    if class_weights is None:
        return None
    negative = not isinstance(class_weights, Tensor) and any(w < 0 for w in class_weights)
    weights = torch.as_tensor(class_weights, dtype=torch.float32, device=like.device)
    if weights.shape != (count,) or negative:
        raise ValueError(
            f"class_weights must hold {count} non-negative numbers (one per class; two in "
            f"binary mode), got {class_weights!r}."
        )
    return weights


def _safe_divide(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, and 0 where ``den == 0`` (then ``num`` is 0 too: nothing to average)."""
    return num / torch.where(den > 0, den, torch.ones_like(den))


def _pixel_mean(per_pixel: Tensor, pixel_weight: Tensor) -> Tensor:
    """Weighted mean over pixels; ignored pixels have weight 0 and are cut out of the graph."""
    total = torch.where(pixel_weight > 0, per_pixel * pixel_weight, torch.zeros_like(per_pixel))
    return _safe_divide(total.sum(), pixel_weight.sum())


def _pixel_weight(target: Tensor, valid: Tensor, weights: Tensor | None) -> Tensor:
    weight = valid.float()
    return weight if weights is None else weight * weights[target]


# Cross-entropy family


def cross_entropy_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mode: LossMode | str,
    ignore_index: int | None = 255,
    class_weights: ClassWeights = None,
) -> Tensor:
    """Categorical cross-entropy (binary mode: binary cross-entropy), averaged over pixels.

    With ``class_weights`` the mean is weighted: ``sum(w[t] * ce) / sum(w[t])`` over valid
    pixels, which is what ``torch.nn.functional.cross_entropy(weight=...)`` computes.

    Args:
        logits: ``B x K x H x W`` (binary: ``B x 1 x H x W``) logits.
        target: ``B x H x W`` class ids (binary: 0/1), ``ignore_index`` where unlabelled.
        mode: ``binary`` or ``multiclass``.
        ignore_index: Target value that is ignored, or None.
        class_weights: One weight per class (binary: for 0 and 1).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: If shapes, mode or weights do not fit.
    """
    logits, target, valid = _prepare(logits, target, mode, ignore_index)
    if _to_mode(mode) == LossMode.BINARY:
        weights = _weights(class_weights, 2, logits)
        per_pixel = F.binary_cross_entropy_with_logits(
            logits[:, 0], target.float(), reduction="none"
        )
    else:
        weights = _weights(class_weights, logits.shape[1], logits)
        per_pixel = F.cross_entropy(logits, target, reduction="none")
    return _pixel_mean(per_pixel, _pixel_weight(target, valid, weights))


def binary_cross_entropy_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mode: LossMode | str,
    ignore_index: int | None = 255,
    class_weights: ClassWeights = None,
) -> Tensor:
    """Binary cross-entropy; in multiclass mode one-vs-rest over the one-hot target.

    Binary mode is :func:`cross_entropy_loss`. In multiclass mode every class logit is a
    sigmoid classifier of "pixel is of this class"; the loss is the mean over valid pixels of
    the per-class BCE, averaged over classes (weighted by ``class_weights`` if given).

    Args:
        logits: ``B x K x H x W`` (binary: ``B x 1 x H x W``) logits.
        target: ``B x H x W`` class ids (binary: 0/1), ``ignore_index`` where unlabelled.
        mode: ``binary`` or ``multiclass``.
        ignore_index: Target value that is ignored, or None.
        class_weights: One weight per class (binary: for 0 and 1).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: If shapes, mode or weights do not fit.
    """
    if _to_mode(mode) == LossMode.BINARY:
        return cross_entropy_loss(
            logits, target, mode=mode, ignore_index=ignore_index, class_weights=class_weights
        )
    logits, target, valid = _prepare(logits, target, mode, ignore_index)
    num_classes = logits.shape[1]
    weights = _weights(class_weights, num_classes, logits)
    per_element = F.binary_cross_entropy_with_logits(
        logits, _one_hot(target, num_classes).float(), reduction="none"
    )
    element_weight = valid.unsqueeze(1).float().expand_as(per_element)
    if weights is not None:
        element_weight = element_weight * weights.view((1, num_classes) + (1,) * (target.dim() - 1))
    return _pixel_mean(per_element, element_weight)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mode: LossMode | str,
    ignore_index: int | None = 255,
    gamma: float = 2.0,
    class_weights: ClassWeights = None,
) -> Tensor:
    """Focal loss (Lin et al., 2017): ``-alpha_t * (1 - p_t)**gamma * log(p_t)``.

    ``p_t`` is the predicted probability of the target class (sigmoid in binary mode, softmax
    otherwise) and ``alpha_t = class_weights[t]`` (1 without weights; the paper's binary
    ``alpha=0.25`` is ``class_weights=[0.75, 0.25]``). The mean is over valid pixels.
    ``gamma=0`` without weights is the cross-entropy.

    Args:
        logits: ``B x K x H x W`` (binary: ``B x 1 x H x W``) logits.
        target: ``B x H x W`` class ids (binary: 0/1), ``ignore_index`` where unlabelled.
        mode: ``binary`` or ``multiclass``.
        ignore_index: Target value that is ignored, or None.
        gamma: Focusing exponent (>= 0); larger values down-weight easy pixels more.
        class_weights: ``alpha`` per class (binary: for 0 and 1).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: If shapes, mode, gamma or weights do not fit.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}.")
    logits, target, valid = _prepare(logits, target, mode, ignore_index)
    if _to_mode(mode) == LossMode.BINARY:
        weights = _weights(class_weights, 2, logits)
        log_pt = -F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), reduction="none")
    else:
        weights = _weights(class_weights, logits.shape[1], logits)
        log_pt = -F.cross_entropy(logits, target, reduction="none")
    # 1 - p_t computed as -expm1(log p_t): exact for confident pixels.
    per_pixel = -((-torch.expm1(log_pt)).clamp_min(0) ** gamma) * log_pt
    if weights is not None:
        per_pixel = per_pixel * weights[target]
    return _pixel_mean(per_pixel, valid.float())


# Overlap family (Dice, IoU, Tversky)


def _one_hot(target: Tensor, num_classes: int) -> Tensor:
    """``B x ...`` ids -> ``B x K x ...`` bool, without a channels-last-hostile permute."""
    classes = torch.arange(num_classes, device=target.device)
    return target.unsqueeze(1) == classes.view((1, num_classes) + (1,) * (target.dim() - 1))


def _soft_confusion(
    logits: Tensor, target: Tensor, mode: LossMode | str, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Soft tp, fp, fn per class summed over the batch, and the float32 logits.

    With probabilities ``p`` and one-hot target ``t`` over valid pixels: ``tp = sum(p t)``,
    ``fp = sum(p (1 - t))``, ``fn = sum((1 - p) t)``. Binary mode returns both classes
    (background first); the callers keep the foreground only unless weighted.
    """
    logits, target, valid = _prepare(logits, target, mode, ignore_index)
    mask = valid.unsqueeze(1)
    if _to_mode(mode) == LossMode.BINARY:
        proba = torch.sigmoid(logits)
        truth = target.unsqueeze(1).float()
        proba, truth = torch.cat([1 - proba, proba], dim=1), torch.cat([1 - truth, truth], dim=1)
    else:
        proba = torch.softmax(logits, dim=1)
        truth = _one_hot(target, logits.shape[1]).float()
    proba = torch.where(mask, proba, torch.zeros_like(proba))
    truth = truth * mask
    dims = [0, *range(2, logits.dim())]
    tp = (proba * truth).sum(dims)
    return tp, proba.sum(dims) - tp, truth.sum(dims) - tp, logits


def _overlap_loss(
    logits: Tensor,
    target: Tensor,
    options: tuple[LossMode | str, int | None, ClassWeights],
    score: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
    smooth: float,
) -> Tensor:
    """``1 - mean_c (num_c + smooth) / (den_c + smooth)``, a class with ``den == 0`` scoring 1.

    ``score(tp, fp, fn)`` gives ``(num, den)``; ``options`` is (mode, ignore_index, weights).
    """
    mode, ignore_index, class_weights = options
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth!r}.")
    tp, fp, fn, logits = _soft_confusion(logits, target, mode, ignore_index)
    binary = _to_mode(mode) == LossMode.BINARY
    weights = _weights(class_weights, 2 if binary else logits.shape[1], logits)
    if binary and weights is None:
        tp, fp, fn = tp[1:], fp[1:], fn[1:]
    num, den = score(tp, fp, fn)
    # den == 0: the class is absent from target and prediction (or every pixel is ignored).
    ratio = torch.where(
        den > 0, (num + smooth) / (den + smooth).clamp_min(1e-12), torch.ones_like(den)
    )
    if weights is None:
        return 1 - ratio.mean()
    return 1 - _safe_divide((ratio * weights).sum(), weights.sum())


def dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mode: LossMode | str,
    ignore_index: int | None = 255,
    smooth: float = 1.0,
    class_weights: ClassWeights = None,
) -> Tensor:
    """Soft Dice loss: ``1 - mean_c (2 tp + s) / (2 tp + fp + fn + s)``.

    Args:
        logits: ``B x K x H x W`` (binary: ``B x 1 x H x W``) logits.
        target: ``B x H x W`` class ids (binary: 0/1), ``ignore_index`` where unlabelled.
        mode: ``binary`` (foreground Dice) or ``multiclass`` (mean over all classes).
        ignore_index: Target value that is ignored, or None.
        smooth: ``s``, added to numerator and denominator (>= 0).
        class_weights: Weights of the classes in the mean; in binary mode two weights make
            the loss score background and foreground.

    Returns:
        A scalar tensor in [0, 1]; 0 for a perfect prediction.

    Raises:
        ValueError: If shapes, mode, smooth or weights do not fit.
    """

    def score(tp: Tensor, fp: Tensor, fn: Tensor) -> tuple[Tensor, Tensor]:
        return 2 * tp, 2 * tp + fp + fn

    return _overlap_loss(logits, target, (mode, ignore_index, class_weights), score, smooth)


def iou_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mode: LossMode | str,
    ignore_index: int | None = 255,
    smooth: float = 1.0,
    class_weights: ClassWeights = None,
) -> Tensor:
    """Soft IoU (Jaccard) loss: ``1 - mean_c (tp + s) / (tp + fp + fn + s)``.

    Args:
        logits: ``B x K x H x W`` (binary: ``B x 1 x H x W``) logits.
        target: ``B x H x W`` class ids (binary: 0/1), ``ignore_index`` where unlabelled.
        mode: ``binary`` (foreground IoU) or ``multiclass`` (mean over all classes).
        ignore_index: Target value that is ignored, or None.
        smooth: ``s``, added to numerator and denominator (>= 0).
        class_weights: Weights of the classes in the mean, as for :func:`dice_loss`.

    Returns:
        A scalar tensor in [0, 1]; 0 for a perfect prediction.

    Raises:
        ValueError: If shapes, mode, smooth or weights do not fit.
    """

    def score(tp: Tensor, fp: Tensor, fn: Tensor) -> tuple[Tensor, Tensor]:
        return tp, tp + fp + fn

    return _overlap_loss(logits, target, (mode, ignore_index, class_weights), score, smooth)


def tversky_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mode: LossMode | str,
    ignore_index: int | None = 255,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1.0,
) -> Tensor:
    """Tversky loss (Salehi et al., 2017): ``1 - mean_c (tp + s) / (tp + a fp + b fn + s)``.

    ``alpha = beta = 0.5`` is the Dice loss (with half its ``smooth``), ``alpha = beta = 1``
    the IoU loss; the default
    ``beta > alpha`` (the paper's 0.3 / 0.7) penalises missed pixels more, favouring recall
    of small, rare classes.

    Args:
        logits: ``B x K x H x W`` (binary: ``B x 1 x H x W``) logits.
        target: ``B x H x W`` class ids (binary: 0/1), ``ignore_index`` where unlabelled.
        mode: ``binary`` (foreground) or ``multiclass`` (mean over all classes).
        ignore_index: Target value that is ignored, or None.
        alpha: Weight of false positives (>= 0).
        beta: Weight of false negatives (>= 0).
        smooth: ``s``, added to numerator and denominator (>= 0).

    Returns:
        A scalar tensor; 0 for a perfect prediction.

    Raises:
        ValueError: If shapes, mode, alpha, beta or smooth do not fit.
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got {alpha!r} and {beta!r}.")

    def score(tp: Tensor, fp: Tensor, fn: Tensor) -> tuple[Tensor, Tensor]:
        return tp, tp + alpha * fp + beta * fn

    return _overlap_loss(logits, target, (mode, ignore_index, None), score, smooth)
