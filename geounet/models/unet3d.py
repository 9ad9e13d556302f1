"""3D U-Net (Cicek et al., 2016) for stacks of dates or volumes.

Input is ``B x C x T x H x W``: C bands, T dates (or slices). Blocks use 3x3x3 convolutions
with padding 1 on every axis; pooling and upsampling act on H and W only, so T is never
reduced and any number of dates works (T = 1 included). H and W may be any size (reflection
padded to a multiple of ``2**depth`` and cropped back, as in :class:`~geounet.models.UNet`).

Output, chosen by ``temporal_output``:

* ``collapse`` (default): ``B x K x H x W``, one map for the whole stack. The decoder's
  features are averaged over T before the 1x1 head, so the model does not depend on T.
* ``keep``: ``B x K x T x H x W``, one map per date (1x1x1 head).
"""

from __future__ import annotations

import dataclasses
import functools
from enum import StrEnum

from torch import Tensor, nn

from geounet.models._blocks import ConvBlock, Decoder, Encoder, check_input, conv1x1, run_padded
from geounet.models._config import LevelsConfig, check_io, to_choice


class TemporalOutput(StrEnum):
    """What the 3D U-Net returns along the time axis.

    Attributes:
        COLLAPSE: Average the features over T, return ``B x K x H x W``.
        KEEP: Return ``B x K x T x H x W``.
    """

    COLLAPSE = "collapse"
    KEEP = "keep"


@dataclasses.dataclass(frozen=True, kw_only=True)
class UNet3DConfig(LevelsConfig):
    """Options of :class:`UNet3D`.

    Attributes:
        base_channels: Channels of the first level; 32 by default (3D convolutions cost
            about 3 x T times a 2D U-Net of the same width).
        temporal_output: ``collapse`` or ``keep`` (see :class:`TemporalOutput`).
    """

    base_channels: int = 32
    temporal_output: TemporalOutput = TemporalOutput.COLLAPSE

    def __post_init__(self) -> None:
        super().__post_init__()
        value = to_choice(TemporalOutput, self.temporal_output, "temporal_output")
        object.__setattr__(self, "temporal_output", value)


class UNet3D(nn.Module):
    """U-Net with 3D convolutions over ``B x C x T x H x W`` stacks.

    Args:
        in_channels: Input bands ``C`` per date.
        num_classes: Output channels ``K`` (1 = binary logits).
        config: Architecture options; defaults to ``UNet3DConfig()``.

    Raises:
        ConfigError: If an argument or option is invalid.
    """

    def __init__(  # noqa: D107
        self, in_channels: int, num_classes: int, *, config: UNet3DConfig | None = None
    ) -> None:
        super().__init__()
        check_io(in_channels, num_classes)
        self.config = config or UNet3DConfig()
        self.in_channels = in_channels
        self.num_classes = num_classes
        cfg = self.config
        block = functools.partial(ConvBlock, batch_norm=cfg.batch_norm, dropout=cfg.dropout, dims=3)
        self.encoder = Encoder(in_channels, cfg.channels, block=block, dims=3)
        self.decoder = Decoder(cfg.channels, block, up_mode=cfg.up_mode, dims=3)
        # 1x1x1 in both modes, so every weight is 5-D and channels_last_3d applies.
        self.head = conv1x1(cfg.base_channels, num_classes, dims=3)

    def _logits(self, x: Tensor) -> Tensor:
        features = self.decoder(self.encoder(x))
        if self.config.temporal_output == TemporalOutput.COLLAPSE:
            return self.head(features.mean(dim=2, keepdim=True)).squeeze(2)  # type: ignore[no-any-return]
        return self.head(features)  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> Tensor:
        """Predict logits for a stack of dates.

        Args:
            x: ``B x C x T x H x W`` float tensor, any T, H and W.

        Returns:
            ``B x K x H x W`` logits (``collapse``) or ``B x K x T x H x W`` (``keep``).

        Raises:
            ValueError: If ``x`` is not 5-D.
            BandMismatchError: If ``x`` does not have ``in_channels`` channels.
        """
        check_input(x, self.in_channels, ndim=5)
        return run_padded(x, 2**self.config.depth, self._logits)
