"""U-Net++ (Zhou et al., 2018): nested, densely connected skip pathways.

Node ``X[i][j]`` sits at level ``i`` (resolution ``1/2**i``) and column ``j``. Column 0 is the
encoder; every other node is a double-convolution block over the concatenation of all earlier
nodes of its level and the upsampled node ``X[i+1][j-1]``::

    X[i][j] = block(cat(X[i][0], ..., X[i][j-1], up(X[i+1][j-1])))

The top row ``X[0][1..depth]`` holds one full-resolution map per nested U-Net depth.

Deep supervision: with ``deep_supervision=True`` every top-row node has its own 1x1 head.
:meth:`UNetPlusPlus.forward_heads` returns the list of their logits (to average a loss over the
heads, as in the paper), while :meth:`UNetPlusPlus.forward` always returns a single tensor, the
mean of the heads' logits, in training and in evaluation, so the model fits any training loop
that expects one tensor. Without deep supervision only ``X[0][depth]`` has a head.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from torch import Tensor, nn

from geounet.errors import ConfigError
from geounet.models._blocks import (
    ConvBlock,
    Encoder,
    Upsample,
    check_input,
    conv1x1,
    crop_to,
    pad_to_multiple,
)
from geounet.models._config import LevelsConfig, check_io


@dataclasses.dataclass(frozen=True, kw_only=True)
class UNetPlusPlusConfig(LevelsConfig):
    """Options of :class:`UNetPlusPlus`.

    Attributes:
        base_channels: Channels of the first level; 32 by default, as in the paper (its
            dense decoder costs several times a U-Net of the same width).
        deep_supervision: Give every top-row node a head (see the module docstring).
    """

    base_channels: int = 32
    deep_supervision: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.deep_supervision, bool):
            raise ConfigError(
                f"deep_supervision must be true or false, got {self.deep_supervision!r}."
            )


class UNetPlusPlus(nn.Module):
    """Nested U-Net with dense skips and optional deep supervision (``same`` padding).

    Args:
        in_channels: Input bands ``C``.
        num_classes: Output channels ``K`` (1 = binary logits).
        config: Architecture options; defaults to ``UNetPlusPlusConfig()``.

    Raises:
        ConfigError: If an argument or option is invalid.
    """

    def __init__(  # noqa: D107
        self, in_channels: int, num_classes: int, *, config: UNetPlusPlusConfig | None = None
    ) -> None:
        super().__init__()
        check_io(in_channels, num_classes)
        self.config = config or UNetPlusPlusConfig()
        self.in_channels = in_channels
        self.num_classes = num_classes
        cfg = self.config
        channels = cfg.channels
        block = functools.partial(ConvBlock, batch_norm=cfg.batch_norm, dropout=cfg.dropout)
        self.encoder = Encoder(in_channels, channels, block=block)
        self.ups = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for col in range(1, cfg.depth + 1):
            for lvl in range(cfg.depth - col + 1):
                key = f"x{lvl}_{col}"
                self.ups[key] = Upsample(channels[lvl + 1], channels[lvl], mode=cfg.up_mode)
                self.nodes[key] = block((col + 1) * channels[lvl], channels[lvl])
        num_heads = cfg.depth if cfg.deep_supervision else 1
        self.heads = nn.ModuleList(conv1x1(channels[0], num_classes) for _ in range(num_heads))

    def _top_row(self, x: Tensor) -> list[Tensor]:
        """Return ``X[0][1..depth]`` for a padded input."""
        grid = [[feature] for feature in self.encoder(x)]
        for col in range(1, self.config.depth + 1):
            for lvl in range(self.config.depth - col + 1):
                key = f"x{lvl}_{col}"
                up = self.ups[key](grid[lvl + 1][col - 1])
                grid[lvl].append(self.nodes[key](torch.cat([*grid[lvl][:col], up], dim=1)))
        return grid[0][1:]

    def forward_heads(self, x: Tensor) -> list[Tensor]:
        """Logits of every head, shallowest nested U-Net first.

        Args:
            x: ``B x C x H x W`` input, any H and W.

        Returns:
            ``depth`` tensors of ``B x K x H x W`` logits with deep supervision, else one.

        Raises:
            BandMismatchError: If ``x`` does not have ``in_channels`` channels.
        """
        check_input(x, self.in_channels, ndim=4)
        height, width = x.shape[-2], x.shape[-1]
        top = self._top_row(pad_to_multiple(x, 2**self.config.depth))
        top = top[-len(self.heads) :]
        return [crop_to(head(t), height, width) for head, t in zip(self.heads, top, strict=True)]

    def forward(self, x: Tensor) -> Tensor:
        """Map ``B x C x H x W`` input to ``B x K x H x W`` logits (mean over the heads).

        Raises:
            BandMismatchError: If ``x`` does not have ``in_channels`` channels.
        """
        heads = self.forward_heads(x)
        if len(heads) == 1:
            return heads[0]
        return torch.stack(heads).mean(dim=0)
