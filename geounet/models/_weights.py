"""Loading encoder weights from a local file, adapting the first convolution to N bands.

Nothing here downloads: weights come from a file the user names (for example a torchgeo
Sentinel-2 checkpoint saved beforehand, or a timm state dict).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from geounet.errors import InputFileError, ModelFileError

logger = logging.getLogger(__name__)

_PREFIXES = ("encoder.", "backbone.", "model.", "module.")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    A torch file holding ``{"state_dict": ...}`` (a Lightning checkpoint) is unwrapped.

    Args:
        path: Local file path.

    Returns:
        Parameter name -> tensor.

    Raises:
        InputFileError: If the file does not exist.
        ModelFileError: If it is not a state dict or would need unsafe unpickling.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Encoder weights file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as err:
        raise ModelFileError(
            f"{str(path)!r} cannot be read as a plain tensor state dict ({err}). geounet never "
            "unpickles arbitrary objects; save the weights with torch.save(model.state_dict())."
        ) from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelFileError(f"{str(path)!r} does not hold a state dict of tensors.")
    return obj


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Adapt a first-convolution weight ``O x I x k x k`` to ``in_channels`` inputs.

    Same rule as segmentation_models_pytorch's ``patch_first_conv``: for one band the kernels
    are summed over the input channels; otherwise input channel ``i`` takes the kernel of
    channel ``i % I`` and every kernel is scaled by ``I / in_channels``, which keeps the
    response to a constant input when ``in_channels`` is a multiple of ``I`` (and roughly
    otherwise).

    Args:
        weight: The pretrained kernel.
        in_channels: Wanted number of input channels.

    Returns:
        A new ``O x in_channels x k x k`` tensor (the input is not modified).
    """
    old = weight.shape[1]
    if old == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_channels) % old
    return weight[:, index] * (old / in_channels)


def _first_conv_key(module: nn.Module) -> str | None:
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d):
            return f"{name}.weight"
    return None


def _match_prefix(state: dict[str, Tensor], own: set[str]) -> dict[str, Tensor]:
    """Strip a wrapper prefix (``encoder.``, ``model.``...) when that makes the keys match."""
    if own & state.keys():
        return state
    for prefix in _PREFIXES:
        stripped = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if own & stripped.keys():
            return stripped
    return state


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load weights from a local file into ``encoder``, adapting its first convolution.

    Keys may be the encoder's own (a timm model's state dict, extra head keys such as
    ``classifier.*`` are ignored) or carry an ``encoder.``/``backbone.``/``model.``/``module.``
    prefix. A first-convolution kernel made for another band count (e.g. 3-band ImageNet
    weights for 13-band Sentinel-2 input) is adapted with :func:`adapt_first_conv`.

    Args:
        encoder: The module to load into (modified in place: it is a freshly built model part).
        path: ``.safetensors`` file or torch state dict file.

    Raises:
        InputFileError: If the file does not exist.
        ModelFileError: If parameters are missing or have the wrong shape.
    """
    own = encoder.state_dict()
    state = _match_prefix(read_state_dict(path), set(own))
    first = _first_conv_key(encoder)
    if first is not None and first in state and state[first].shape[1] != own[first].shape[1]:
        logger.info(
            "Adapting %s from %d to %d input bands.",
            first,
            state[first].shape[1],
            own[first].shape[1],
        )
        state[first] = adapt_first_conv(state[first], own[first].shape[1])
    missing = sorted(own.keys() - state.keys())
    if missing:
        raise ModelFileError(
            f"{str(path)!r} lacks {len(missing)} of the encoder's {len(own)} parameters "
            f"(first: {missing[:3]}); were the weights made for another encoder?"
        )
    wrong = [k for k in own if state[k].shape != own[k].shape]
    if wrong:
        key = wrong[0]
        raise ModelFileError(
            f"{str(path)!r}: {len(wrong)} parameters have the wrong shape, e.g. {key} is "
            f"{tuple(state[key].shape)} but the encoder needs {tuple(own[key].shape)}."
        )
    ignored = len(state) - len(own)
    if ignored:
        logger.debug("Ignored %d parameters of %s not used by the encoder.", ignored, path)
    encoder.load_state_dict({k: state[k] for k in own})
