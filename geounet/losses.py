"""Segmentation losses: a functional core, thin ``nn.Module`` wrappers and a factory by name.

Modes (:class:`LossMode`):

* ``binary``: logits ``B x 1 x H x W``, target ``B x H x W`` with values {0, 1};
* ``multiclass``: logits ``B x K x H x W`` (K >= 2), target ``B x H x W`` int64 class ids.

Extra spatial dims work too (``B x K x T x H x W`` with a ``B x T x H x W`` target). In both
modes target pixels equal to ``ignore_index`` (255, the nodata class) contribute nothing: not to
the value, not to the gradient. A batch whose pixels are all ignored gives a loss of 0 with zero
gradients. Losses are computed in float32 whatever the logits' dtype.

``class_weights`` (a sequence with one weight per class; in binary mode two weights, for 0 and
1) weight pixels by their target class in the cross-entropy family and classes' scores in the
overlap family (Dice, IoU). Overlap losses are computed over the whole batch (sums over images
and pixels, then a mean over classes), as segmentation_models_pytorch does; in binary mode they
score the foreground only unless ``class_weights`` asks for both classes.

Build losses from a config with :func:`create_loss`: ``"dice"``, ``"ce+dice"``,
``"0.5*focal+dice"``, ``{"ce": 1.0, "dice": 0.5}`` or
``[{"name": "focal", "gamma": 3}, {"name": "dice", "weight": 0.5}]``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geounet.errors import ConfigError

ClassWeights = Sequence[float] | Tensor | None
LossSpec = str | Mapping[str, float] | Sequence[Mapping[str, Any]]


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


def _check_option(key: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` is a number >= 0 (``class_weights``: a list of them)."""
    numbers: list[Any] = [value]
    if key == "class_weights":
        if value is None:
            return
        try:
            numbers = torch.as_tensor(value, dtype=torch.float64).flatten().tolist()
        except (TypeError, ValueError, RuntimeError):
            numbers = [None]
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in numbers):
        raise ConfigError(f"{key} must be a non-negative number (or list), got {value!r}.")


class _Loss(nn.Module):
    """Base of the loss modules: checks and stores the options, calls ``function``.

    Args:
        mode: ``binary`` or ``multiclass``.
        ignore_index: Target value that is ignored, or None.
        **options: Keyword arguments of the functional form (defaults come from there).

    Raises:
        ConfigError: If an option is not one of the function's.
    """

    function: Any = None

    def __init__(  # noqa: D107
        self, mode: LossMode | str, *, ignore_index: int | None = 255, **options: Any
    ) -> None:
        super().__init__()
        valid = _loss_options(type(self))
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} has no option {unknown}; valid options: {sorted(valid)}."
                + _suggest(unknown[0], valid)
            )
        for key, value in options.items():
            _check_option(key, value)
        self.mode = _to_mode(mode)
        self.ignore_index = ignore_index
        weights = options.pop("class_weights", None)
        self.options = options
        # A buffer follows the module to the GPU; not persistent, it belongs to the config.
        self.class_weights: Tensor | None
        weights = None if weights is None else torch.as_tensor(weights).float()
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Return the loss of ``B x K x H x W`` logits against a ``B x H x W`` target."""
        options = dict(self.options)
        if self.class_weights is not None:
            options["class_weights"] = self.class_weights
        fn = type(self).function
        loss: Tensor = fn(logits, target, mode=self.mode, ignore_index=self.ignore_index, **options)
        return loss

    def extra_repr(self) -> str:
        """Show the mode, ignore index and options."""
        options = "".join(f", {k}={v}" for k, v in self.options.items())
        return f"mode={self.mode.value}, ignore_index={self.ignore_index}{options}"


class CrossEntropyLoss(_Loss):
    """Module form of :func:`cross_entropy_loss`; option ``class_weights``."""

    function = staticmethod(cross_entropy_loss)


class BinaryCrossEntropyLoss(_Loss):
    """Module form of :func:`binary_cross_entropy_loss`; option ``class_weights``."""

    function = staticmethod(binary_cross_entropy_loss)


class FocalLoss(_Loss):
    """Module form of :func:`focal_loss`; options ``gamma``, ``class_weights``."""

    function = staticmethod(focal_loss)


class DiceLoss(_Loss):
    """Module form of :func:`dice_loss`; options ``smooth``, ``class_weights``."""

    function = staticmethod(dice_loss)


class IoULoss(_Loss):
    """Module form of :func:`iou_loss` (the Jaccard loss); options ``smooth``, ``class_weights``."""

    function = staticmethod(iou_loss)


class TverskyLoss(_Loss):
    """Module form of :func:`tversky_loss`; options ``alpha``, ``beta``, ``smooth``."""

    function = staticmethod(tversky_loss)


class CombinedLoss(nn.Module):
    """A weighted sum of losses, e.g. cross-entropy + Dice.

    Args:
        losses: Name -> loss module; each is called as ``loss(logits, target)``.
        weights: Name -> weight (>= 0); same keys as ``losses``.

    Raises:
        ValueError: If the keys differ or a weight is negative.
    """

    def __init__(  # noqa: D107
        self, losses: Mapping[str, nn.Module], weights: Mapping[str, float]
    ) -> None:
        super().__init__()
        if set(losses) != set(weights) or not losses:
            raise ValueError(
                f"losses and weights need the same, non-empty keys; got {sorted(losses)} "
                f"and {sorted(weights)}."
            )
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"Loss weights must be >= 0, got {dict(weights)}.")
        self.losses = nn.ModuleDict(losses)
        self.weights = {name: float(weights[name]) for name in losses}

    def forward_terms(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Return every term's unweighted value, for logging."""
        return {name: loss(logits, target) for name, loss in self.losses.items()}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Return ``sum(weight * term)``."""
        terms = self.forward_terms(logits, target)
        return torch.stack([self.weights[name] * value for name, value in terms.items()]).sum()

    def extra_repr(self) -> str:
        """Show the weighted sum."""
        return " + ".join(f"{w:g}*{name}" for name, w in self.weights.items())


LOSSES: dict[str, type[_Loss]] = {
    "bce": BinaryCrossEntropyLoss,
    "ce": CrossEntropyLoss,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "iou": IoULoss,
    "jaccard": IoULoss,
    "tversky": TverskyLoss,
}
"""Loss names accepted by :func:`create_loss` (``jaccard`` is another name for ``iou``)."""


def list_losses() -> list[str]:
    """Return the loss names :func:`create_loss` accepts, sorted."""
    return sorted(LOSSES)


def _suggest(name: str, valid: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(valid), n=1)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def _loss_class(name: object) -> type[_Loss]:
    key = str(name).strip().lower()
    if key not in LOSSES:
        raise ConfigError(
            f"Unknown loss {name!r}; valid losses are {list_losses()}." + _suggest(key, LOSSES)
        )
    return LOSSES[key]


def _loss_options(cls: type[_Loss]) -> set[str]:
    """The options of a loss module: its function's keyword-only arguments."""
    params = inspect.signature(cls.function).parameters
    return {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY} - {"mode", "ignore_index"}


def _check_weight_count(weights: Any, num_classes: int) -> None:
    """Raise ConfigError unless ``weights`` is None or has one entry per class (binary: 2)."""
    count = 2 if num_classes == 1 else num_classes
    if weights is not None and (not hasattr(weights, "__len__") or len(weights) != count):
        raise ConfigError(
            f"class_weights={weights!r} needs {count} values for num_classes={num_classes} "
            "(one per class; two, for 0 and 1, in binary mode)."
        )


def _parse_weight(text: str, spec: object) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise ConfigError(f"Loss weight {text!r} in {spec!r} is not a number.") from None
    if weight < 0:
        raise ConfigError(f"Loss weights must be >= 0, got {weight} in {spec!r}.")
    return weight


def _parse_spec(spec: LossSpec) -> list[tuple[str, float, dict[str, Any]]]:
    """Normalise a spec to ``[(name, weight, term options), ...]``."""
    terms: list[tuple[str, float, dict[str, Any]]] = []
    if isinstance(spec, str):
        for part in spec.split("+"):
            weight_text, _, name = part.strip().rpartition("*")
            weight = _parse_weight(weight_text, spec) if weight_text else 1.0
            terms.append((name.strip().lower(), weight, {}))
    elif isinstance(spec, Mapping):
        for name, weight in spec.items():
            terms.append((str(name).lower(), _parse_weight(str(weight), spec), {}))
    elif isinstance(spec, Sequence):
        for item in spec:
            if not isinstance(item, Mapping) or "name" not in item:
                raise ConfigError(f"Each loss term needs a 'name', got {item!r}.")
            options = {k: v for k, v in item.items() if k not in ("name", "weight")}
            weight = _parse_weight(str(item.get("weight", 1.0)), item)
            terms.append((str(item["name"]).lower(), weight, options))
    else:
        raise ConfigError(f"A loss spec is a name, a dict or a list, got {spec!r}.")
    if not terms:
        raise ConfigError(f"The loss spec {spec!r} names no loss.")
    names = [name for name, _, _ in terms]
    if len(set(names)) != len(names):
        raise ConfigError(f"The loss spec {spec!r} names a loss twice.")
    return terms


def create_loss(
    spec: LossSpec, *, num_classes: int, ignore_index: int | None = 255, **options: Any
) -> nn.Module:
    """Build a loss, or a weighted sum of losses, from a config value.

    Args:
        spec: A name (``"dice"``), a sum (``"ce+dice"``, ``"0.5*focal+dice"``), a dict of
            name -> weight (``{"ce": 1.0, "dice": 0.5}``) or a list of dicts with ``name``,
            optional ``weight`` and that term's options. Names: see :func:`list_losses`.
        num_classes: The model's output channels: 1 selects binary mode, more multiclass.
        ignore_index: Target value that is ignored (255), or None.
        **options: Options of the terms (``class_weights``, ``gamma``, ``smooth``, ``alpha``,
            ``beta``); each goes to every term that accepts it; None means "not set".

    Returns:
        The loss module (a :class:`CombinedLoss` when the spec has several terms or a weight
        other than 1), called as ``loss(logits, target)``.

    Raises:
        ConfigError: If a name is unknown, an option fits no term, or a value is invalid.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}.")
    mode = LossMode.BINARY if num_classes == 1 else LossMode.MULTICLASS
    options = {k: v for k, v in options.items() if v is not None}  # None: "not set"
    terms = _parse_spec(spec)
    used: set[str] = set()
    losses: dict[str, nn.Module] = {}
    for name, _, term_options in terms:
        cls = _loss_class(name)
        accepted = _loss_options(cls)
        bad = sorted(set(term_options) - accepted)
        if bad:
            raise ConfigError(
                f"Loss {name!r} has no option {bad}; its options: {sorted(accepted)}."
            )
        kwargs = {k: v for k, v in options.items() if k in accepted}
        used |= kwargs.keys()
        _check_weight_count({**kwargs, **term_options}.get("class_weights"), num_classes)
        try:
            losses[name] = cls(mode, ignore_index=ignore_index, **{**kwargs, **term_options})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"Invalid options for loss {name!r}: {err}") from err
    unused = sorted(set(options) - used)
    if unused:
        known = sorted(set().union(*(_loss_options(_loss_class(n)) for n, _, _ in terms)))
        raise ConfigError(
            f"Option(s) {unused} fit no loss of {spec!r}; valid options: {known}."
            + _suggest(unused[0], set().union(*map(_loss_options, LOSSES.values())))
        )
    if len(terms) == 1 and terms[0][1] == 1.0:
        return losses[terms[0][0]]
    return CombinedLoss(losses, {name: weight for name, weight, _ in terms})
