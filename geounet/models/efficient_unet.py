"""Efficient U-Net: an EfficientNet encoder from timm with a U-Net decoder.

The encoder is any timm model that supports ``features_only`` (default ``efficientnet_b0``,
5.3 M parameters less its classifier); it is built for ``in_channels`` bands directly, so any
number of bands works. Pretrained weights are loaded from a *local* file only
(``encoder_weights``); a 3-band kernel is adapted to N bands (see
:func:`~geounet.models._weights.adapt_first_conv`). torchgeo's multispectral checkpoints are
timm state dicts, so they load with the matching encoder; fetch them once, outside geounet::

    from torchgeo.models import ResNet50_Weights

    state = ResNet50_Weights.SENTINEL2_ALL_MOCO.get_state_dict(progress=True)  # downloads
    torch.save(state, "resnet50_s2.pth")
    create_model("efficient_unet", in_channels=13, num_classes=4, encoder="resnet50",
                 encoder_weights="resnet50_s2.pth")

The decoder follows segmentation_models_pytorch's U-Net: starting at the deepest feature map
(stride 32), each stage upsamples (nearest) to the next shallower feature map, concatenates it
and applies a double 3x3 convolution block; a last stage without skip returns to full
resolution. Inputs of any H and W are reflection padded to a multiple of the encoder's largest
stride and cropped back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geounet.errors import ConfigError
from geounet.models._blocks import ConvBlock, check_input, conv1x1, run_padded
from geounet.models._config import check_int, check_io, suggest
from geounet.models._weights import load_encoder_weights


def _check_encoder(name: object) -> None:
    import timm

    if not isinstance(name, str) or not timm.is_model(name):
        valid = timm.list_models()
        raise ConfigError(
            f"encoder={name!r} is not a timm model; try efficientnet_b0 ... efficientnet_b7 "
            "or any name of timm.list_models()." + suggest(str(name), valid)
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class EfficientUNetConfig:
    """Options of :class:`EfficientUNet`.

    Attributes:
        encoder: timm model name, used with ``features_only=True``.
        encoder_weights: Path of a local ``.safetensors`` or torch state dict for the encoder,
            or None for random initialisation. Never downloaded.
        decoder_channels: Channels of the decoder stages, deepest first; one per encoder
            feature map (5 for EfficientNet and ResNet).
    """

    encoder: str = "efficientnet_b0"
    encoder_weights: str | None = None
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)

    def __post_init__(self) -> None:
        _check_encoder(self.encoder)
        if self.encoder_weights is not None:
            object.__setattr__(self, "encoder_weights", str(self.encoder_weights))
        if not isinstance(self.decoder_channels, list | tuple) or not self.decoder_channels:
            raise ConfigError(
                f"decoder_channels must be a list of channel counts, got {self.decoder_channels!r}."
            )
        channels = tuple(self.decoder_channels)
        for value in channels:
            check_int(value, "decoder_channels[]", minimum=1)
        object.__setattr__(self, "decoder_channels", channels)


class EfficientUNet(nn.Module):
    """U-Net decoder on a timm encoder (EfficientNet-B0 by default), any band count.

    Args:
        in_channels: Input bands ``C``.
        num_classes: Output channels ``K`` (1 = binary logits).
        config: Options; defaults to ``EfficientUNetConfig()``.

    Raises:
        ConfigError: If an option is invalid or ``decoder_channels`` does not have one entry
            per encoder feature map.
        InputFileError: If ``encoder_weights`` names a missing file.
        ModelFileError: If the weights do not fit the encoder.
    """

    def __init__(  # noqa: D107
        self, in_channels: int, num_classes: int, *, config: EfficientUNetConfig | None = None
    ) -> None:
        super().__init__()
        import timm

        check_io(in_channels, num_classes)
        self.config = config or EfficientUNetConfig()
        self.in_channels = in_channels
        self.num_classes = num_classes
        cfg = self.config
        self.encoder: Any = timm.create_model(
            cfg.encoder, features_only=True, in_chans=in_channels, pretrained=False
        )
        encoder_channels = list(self.encoder.feature_info.channels())
        self.stride = int(max(self.encoder.feature_info.reduction()))
        decoder_channels = list(cfg.decoder_channels)
        if len(decoder_channels) != len(encoder_channels):
            raise ConfigError(
                f"decoder_channels has {len(decoder_channels)} entries but encoder "
                f"{cfg.encoder!r} returns {len(encoder_channels)} feature maps; give one "
                "channel count per feature map, deepest first."
            )
        skip_channels = [*encoder_channels[-2::-1], 0]  # the last stage has no skip
        stage_in = [encoder_channels[-1], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            ConvBlock(cin + skip, cout)
            for cin, skip, cout in zip(stage_in, skip_channels, decoder_channels, strict=True)
        )
        self.head = conv1x1(decoder_channels[-1], num_classes)
        if cfg.encoder_weights is not None:
            load_encoder_weights(self.encoder, cfg.encoder_weights)

    def _logits(self, x: Tensor) -> Tensor:
        features = self.encoder(x)
        y = features[-1]
        skips = features[-2::-1]
        for index, block in enumerate(self.blocks):
            target = skips[index] if index < len(skips) else x
            y = F.interpolate(y, size=(target.shape[-2], target.shape[-1]), mode="nearest")
            if index < len(skips):
                y = torch.cat([y, skips[index]], dim=1)
            y = block(y)
        return self.head(y)  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> Tensor:
        """Map ``B x C x H x W`` input (any H, W) to ``B x K x H x W`` logits.

        Raises:
            BandMismatchError: If ``x`` does not have ``in_channels`` channels.
        """
        check_input(x, self.in_channels, ndim=4)
        return run_padded(x, self.stride, self._logits)
