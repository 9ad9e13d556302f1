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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from geounet.errors import ConfigError
from geounet.losses._functional import (
    ClassWeights,
    LossMode,
    _to_mode,
    binary_cross_entropy_loss,
    cross_entropy_loss,
    dice_loss,
    focal_loss,
    iou_loss,
    tversky_loss,
)

__all__ = [
    "BinaryCrossEntropyLoss", "ClassWeights", "CombinedLoss", "CrossEntropyLoss", "DiceLoss",
    "FocalLoss", "IoULoss", "LossMode", "LossSpec", "TverskyLoss", "binary_cross_entropy_loss",
    "create_loss", "cross_entropy_loss", "dice_loss", "focal_loss", "iou_loss", "list_losses",
    "tversky_loss",
]  # fmt: skip

LossSpec = str | Mapping[str, float] | Sequence[Mapping[str, Any]]


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
