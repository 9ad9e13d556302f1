"""The model registry: every U-Net variant by name, with its options and their defaults.

``create_model("unet", in_channels=13, num_classes=4, depth=4)`` looks the name up in
:data:`MODELS`, builds the variant's options dataclass from the keyword arguments (so a typo
or a bad value fails with the valid names) and returns the module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from geounet.errors import ConfigError
from geounet.models._config import config_to_dict, json_value, suggest
from geounet.models.attention_unet import AttentionUNet, AttentionUNetConfig
from geounet.models.efficient_unet import EfficientUNet, EfficientUNetConfig
from geounet.models.residual_unet import ResidualUNet, ResidualUNetConfig
from geounet.models.unet import UNet, UNetConfig
from geounet.models.unet3d import UNet3D, UNet3DConfig
from geounet.models.unet_plus_plus import UNetPlusPlus, UNetPlusPlusConfig


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        model_cls: Class called as ``model_cls(in_channels, num_classes, config=...)``.
        config_cls: Frozen dataclass whose fields are the model's options.
        summary: One line for listings.
    """

    model_cls: type[nn.Module]
    config_cls: type[Any]
    summary: str


MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(UNet, UNetConfig, "U-Net (Ronneberger et al., 2015)"),
    "residual_unet": ModelEntry(ResidualUNet, ResidualUNetConfig, "U-Net of residual blocks"),
    "attention_unet": ModelEntry(
        AttentionUNet, AttentionUNetConfig, "U-Net with attention gates on the skips"
    ),
    "unet_plus_plus": ModelEntry(
        UNetPlusPlus, UNetPlusPlusConfig, "U-Net++: nested dense skips, deep supervision"
    ),
    "unet3d": ModelEntry(UNet3D, UNet3DConfig, "3D U-Net over B x C x T x H x W date stacks"),
    "efficient_unet": ModelEntry(
        EfficientUNet, EfficientUNetConfig, "EfficientNet encoder (timm) + U-Net decoder"
    ),
}
"""Registered models by name; extend it with :func:`register_model`."""

_INIT_ONLY_OPTIONS = {"encoder_weights"}


def list_models() -> list[str]:
    """Return the names of all registered models, sorted."""
    return sorted(MODELS)


def _entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(
            f"Unknown model {name!r}; valid models are {list_models()}."
            + suggest(str(name), MODELS)
        )
    return MODELS[name]


def model_options(name: str) -> dict[str, Any]:
    """Return the options of a model and their defaults.

    Args:
        name: A registered model name.

    Returns:
        Option name -> default value (enums as their string, tuples as lists), in the order
        of the model's options dataclass.

    Raises:
        ConfigError: If ``name`` is not registered.
    """
    return {f.name: json_value(f.default) for f in dataclasses.fields(_entry(name).config_cls)}


def create_model(name: str, *, in_channels: int, num_classes: int, **options: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: Model name, see :func:`list_models`.
        in_channels: Input bands ``C``.
        num_classes: Output channels ``K``; 1 for binary segmentation (logits for a
            sigmoid), otherwise one logit per class (for a softmax).
        **options: Architecture options, see :func:`model_options` (e.g. ``depth=4``).

    Returns:
        The model, in training mode, returning logits. 2D models map ``B x C x H x W`` to
        ``B x K x H x W``; ``unet3d`` takes ``B x C x T x H x W``.

    Raises:
        ConfigError: If the name or an option is unknown or a value is invalid; the message
            lists the valid names.
    """
    config = model_config(name, **options)
    return _entry(name).model_cls(in_channels, num_classes, config=config)


def model_config(name: str, **options: Any) -> Any:
    """The validated options dataclass of a registered model, without building the model.

    Cheap (no weights are allocated), so a job can check its model options up front.

    Args:
        name: Model name, see :func:`list_models`.
        **options: Architecture options, see :func:`model_options`.

    Returns:
        The model's config dataclass (e.g. :class:`~geounet.models.UNetConfig`).

    Raises:
        ConfigError: If the name or an option is unknown or a value is invalid.
    """
    entry = _entry(name)
    valid = [field.name for field in dataclasses.fields(entry.config_cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {unknown} for model {name!r}; valid options are {valid}."
            + suggest(unknown[0], valid)
        )
    return entry.config_cls(**options)


def register_model(name: str, model_cls: type[nn.Module], config_cls: type[Any]) -> None:
    """Add a model to the registry so configs, model files and the CLI can name it.

    Any ``nn.Module`` (a torchgeo or segmentation_models_pytorch U-Net) becomes a geounet
    model through a small wrapper class taking ``(in_channels, num_classes, config=...)``;
    see README, torchgeo and other models. A model file of it records the wrapper's module,
    which ``load_model_file`` (and so ``geounet predict``) imports to register it again.

    Args:
        name: The name configs will use.
        model_cls: Called as ``model_cls(in_channels, num_classes, config=...)``; the instance
            must set ``in_channels``, ``num_classes`` and ``config``.
        config_cls: A dataclass whose fields (all with defaults) are the options.

    Raises:
        ConfigError: If the name is taken or ``config_cls`` is not a dataclass.
    """
    if name in MODELS:
        raise ConfigError(f"A model named {name!r} is already registered.")
    if not dataclasses.is_dataclass(config_cls):
        raise ConfigError(f"config_cls must be a dataclass, got {config_cls!r}.")
    summary = (model_cls.__doc__ or name).strip().splitlines()[0]
    MODELS[name] = ModelEntry(model_cls, config_cls, summary)


def describe_model(model: nn.Module) -> dict[str, Any]:
    """Describe a registered model so that :func:`create_model` can rebuild it.

    ``create_model(d["name"], in_channels=d["in_channels"], num_classes=d["num_classes"],
    **d["options"])`` returns the same architecture. Model files store this dict beside the
    state dict, so options that only initialise weights (``encoder_weights``, a local path
    that may not exist where the model file is used) are set to None.

    Args:
        model: A model built from the registry.

    Returns:
        ``{"name", "in_channels", "num_classes", "options"}`` with JSON-friendly values.

    Raises:
        ConfigError: If the model's class is not registered.
    """
    for name, entry in MODELS.items():
        if type(model) is entry.model_cls:
            options = config_to_dict(model.config)
            for option in _INIT_ONLY_OPTIONS & options.keys():
                options[option] = None
            described = {
                "name": name,
                "in_channels": model.in_channels,
                "num_classes": model.num_classes,
                "options": options,
            }
            if not type(model).__module__.startswith(("geounet.", "__main__")):
                # A user's model (register_model): loading the model file imports this module,
                # whose register_model call makes the name known again (e.g. in `geounet predict`).
                described["module"] = type(model).__module__
            return described
    raise ConfigError(f"{type(model).__name__} is not a registered model class.")
