"""Residual U-Net: the U-Net with ResNet basic blocks in place of plain double convolutions.

The residual shortcuts (Zhang et al., 2018, "Road Extraction by Deep Residual U-Net") ease the
gradient flow of deep encoders; the layout, depth semantics and options are those of
:class:`~geounet.models.unet.UNet` with ``same`` padding.
"""

from __future__ import annotations

import dataclasses
import functools

from torch import Tensor, nn

from geounet.models._blocks import (
    Decoder,
    Encoder,
    ResidualBlock,
    check_input,
    conv1x1,
    run_padded,
)
from geounet.models._config import LevelsConfig, check_io


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResidualUNetConfig(LevelsConfig):
    """Options of :class:`ResidualUNet`: depth, base_channels, batch_norm, up_mode, dropout."""


class ResidualUNet(nn.Module):
    """U-Net whose every level is a residual block (``same`` padding, any input size).

    Args:
        in_channels: Input bands ``C``.
        num_classes: Output channels ``K`` (1 = binary logits).
        config: Architecture options; defaults to ``ResidualUNetConfig()``.

    Raises:
        ConfigError: If an argument or option is invalid.
    """

    def __init__(  # noqa: D107
        self, in_channels: int, num_classes: int, *, config: ResidualUNetConfig | None = None
    ) -> None:
        super().__init__()
        check_io(in_channels, num_classes)
        self.config = config or ResidualUNetConfig()
        self.in_channels = in_channels
        self.num_classes = num_classes
        cfg = self.config
        block = functools.partial(ResidualBlock, batch_norm=cfg.batch_norm, dropout=cfg.dropout)
        self.encoder = Encoder(in_channels, cfg.channels, block=block)
        self.decoder = Decoder(cfg.channels, block, up_mode=cfg.up_mode)
        self.head = conv1x1(cfg.base_channels, num_classes)

    def _logits(self, x: Tensor) -> Tensor:
        return self.head(self.decoder(self.encoder(x)))  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> Tensor:
        """Map ``B x C x H x W`` input (any H, W) to ``B x K x H x W`` logits.

        Raises:
            BandMismatchError: If ``x`` does not have ``in_channels`` channels.
        """
        check_input(x, self.in_channels, ndim=4)
        return run_padded(x, 2**self.config.depth, self._logits)
