"""Turning logits into probabilities and classes.

Models return logits. One output channel means a binary mask (sigmoid); several channels
mean one logit per class (softmax over dim 1). Both work for ``B x K x H x W`` and
``B x K x T x H x W`` outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_logits(logits: Tensor) -> None:
    if logits.dim() < 3:
        raise ValueError(
            f"Expected logits of shape B x K x H x W (or B x K x T x H x W), got "
            f"{tuple(logits.shape)}."
        )


def predict_proba(logits: Tensor) -> Tensor:
    """Probabilities from logits: sigmoid if ``K == 1``, else softmax over the class dim.

    Args:
        logits: ``B x K x ...`` float tensor.

    Returns:
        A float tensor of the same shape with values in [0, 1]; for ``K > 1`` they sum to 1
        over dim 1; for ``K == 1`` it is the probability of the positive class.

    Raises:
        ValueError: If ``logits`` has fewer than 3 dimensions.
    """
    _check_logits(logits)
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def predict_classes(logits: Tensor, *, threshold: float = 0.5) -> Tensor:
    """Class ids from logits: ``probability > threshold`` if ``K == 1``, else the argmax.

    Args:
        logits: ``B x K x ...`` float tensor.
        threshold: Probability above which a binary pixel is positive.

    Returns:
        ``B x ...`` int64 tensor (the class dim removed).

    Raises:
        ValueError: If ``logits`` has fewer than 3 dimensions or ``threshold`` is not in (0, 1).
    """
    _check_logits(logits)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}.")
    if logits.shape[1] == 1:
        # sigmoid(z) > t  <=>  z > logit(t); avoids computing the sigmoid.
        cut = torch.logit(torch.tensor(threshold, dtype=torch.float64)).item()
        return (logits[:, 0] > cut).long()
    return logits.argmax(dim=1)
