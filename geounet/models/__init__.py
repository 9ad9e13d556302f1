"""The U-Net family behind one registry.

Every model takes ``B x C x H x W`` float input (``unet3d``: ``B x C x T x H x W``) and returns
logits ``B x K x H x W``; with ``same`` padding any H and W work and the output has the input's
size. Build one by name::

    from geounet.models import create_model, predict_proba

    model = create_model("unet", in_channels=13, num_classes=4, depth=4, base_channels=64)
    proba = predict_proba(model(x))

Names: ``attention_unet``, ``efficient_unet``, ``residual_unet``, ``unet``, ``unet3d``,
``unet_plus_plus`` (see :func:`list_models` and :func:`model_options`).
"""

from __future__ import annotations

from geounet.models._config import Padding, UpMode
from geounet.models._weights import adapt_first_conv, load_encoder_weights
from geounet.models.attention_unet import AttentionUNet, AttentionUNetConfig
from geounet.models.efficient_unet import EfficientUNet, EfficientUNetConfig
from geounet.models.heads import predict_classes, predict_proba
from geounet.models.registry import (
    MODELS,
    ModelEntry,
    create_model,
    describe_model,
    list_models,
    model_config,
    model_options,
    register_model,
)
from geounet.models.residual_unet import ResidualUNet, ResidualUNetConfig
from geounet.models.unet import UNet, UNetConfig, valid_input_size, valid_output_size
from geounet.models.unet3d import TemporalOutput, UNet3D, UNet3DConfig
from geounet.models.unet_plus_plus import UNetPlusPlus, UNetPlusPlusConfig

__all__ = [
    "MODELS",
    "AttentionUNet",
    "AttentionUNetConfig",
    "EfficientUNet",
    "EfficientUNetConfig",
    "ModelEntry",
    "Padding",
    "ResidualUNet",
    "ResidualUNetConfig",
    "TemporalOutput",
    "UNet",
    "UNet3D",
    "UNet3DConfig",
    "UNetConfig",
    "UNetPlusPlus",
    "UNetPlusPlusConfig",
    "UpMode",
    "adapt_first_conv",
    "create_model",
    "describe_model",
    "list_models",
    "model_config",
    "load_encoder_weights",
    "model_options",
    "predict_classes",
    "predict_proba",
    "register_model",
    "valid_input_size",
    "valid_output_size",
]
