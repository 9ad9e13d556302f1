"""The U-Net of Ronneberger et al. (2015), for any number of bands and classes.

Depth semantics: ``depth`` is the number of 2x2 max-pooling steps. Level ``i`` (0-based) has
``base_channels * 2**i`` channels and the bottleneck ``base_channels * 2**depth``:

* the paper: ``depth=4, base_channels=64`` gives 64 -> 128 -> 256 -> 512 -> bottleneck 1024;
  with ``padding="valid"``, ``batch_norm=False``, 1 band and 2 classes it has 31,030,658
  parameters and maps 572x572 to 388x388;
* the founding document's minimal sketch (levels 64, 128, bottleneck 256, transposed
  convolutions, no BatchNorm, one output) is ``depth=2, base_channels=64, batch_norm=False,
  up_mode="transpose"`` with ``in_channels=1, num_classes=1``: 1,861,697 parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from torch import Tensor, nn

from geounet.errors import ChipSizeError
from geounet.models._blocks import (
    ConvBlock,
    Decoder,
    Encoder,
    check_input,
    conv1x1,
    run_padded,
)
from geounet.models._config import LevelsConfig, Padding, check_int, check_io, to_choice


@dataclasses.dataclass(frozen=True, kw_only=True)
class UNetConfig(LevelsConfig):
    """Options of :class:`UNet` (see :class:`~geounet.models._config.LevelsConfig`).

    Attributes:
        padding: ``same`` (default): any input height and width work, the input is reflection
            padded at the bottom/right to a multiple of ``2**depth`` and the output cropped back,
            so the output has the input's size. ``valid``: the paper's unpadded convolutions;
            the output is smaller (see :func:`valid_output_size`) and the input size must pool
            evenly.
    """

    padding: Padding = Padding.SAME

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "padding", to_choice(Padding, self.padding, "padding"))


def _bottleneck_bounds(input_size: int, depth: int) -> tuple[int, int]:
    """Smallest valid bottleneck size and the one an input of ``input_size`` reaches (floored)."""
    scale = 2**depth
    smallest = math.ceil((1 + 4 * (scale - 1)) / scale)
    reached = (input_size - 4 * (scale - 1)) // scale - 4
    return smallest, reached


def _input_for_bottleneck(bottleneck: int, depth: int) -> int:
    """Input size whose valid-padding bottleneck is exactly ``bottleneck`` pixels."""
    scale = 2**depth
    return scale * (bottleneck + 4) + 4 * (scale - 1)


def valid_output_size(input_size: int, *, depth: int = 4) -> int:
    """Output side length of a valid-padding U-Net for an input side length.

    Every 3x3 convolution trims one pixel per side, every pooling halves, every upsampling
    doubles: ``572 -> 388`` for depth 4. The difference, ``12 * 2**depth - 8`` pixels (184 for
    depth 4), is the context the overlap-tile strategy must read around each output chip.

    Args:
        input_size: Input height or width in pixels.
        depth: Number of pooling steps of the network.

    Returns:
        The output height or width in pixels.

    Raises:
        ChipSizeError: If the input does not pool evenly at every level or is too small; the
            message names the nearest valid input sizes.
    """
    check_int(depth, "depth", minimum=1)
    smallest, reached = _bottleneck_bounds(input_size, depth)
    if reached < smallest or _input_for_bottleneck(reached, depth) != input_size:
        below = _input_for_bottleneck(max(reached, smallest), depth)
        above = _input_for_bottleneck(max(reached + 1, smallest), depth)
        nearest = sorted({size for size in (below, above) if size != input_size})
        raise ChipSizeError(
            f"Input size {input_size} does not fit a valid-padding U-Net of depth {depth}: the "
            f"feature maps must stay even before each pooling. Use one of {nearest} (valid sizes "
            f"are {2**depth}*k + {_input_for_bottleneck(0, depth)}), or padding='same'."
        )
    scale = 2**depth
    return scale * reached - 4 * (scale - 1)


def valid_input_size(output_size: int, *, depth: int = 4) -> int:
    """Smallest valid-padding input side whose output side is at least ``output_size``.

    Use it to plan overlap-tile prediction: read chips of this size, keep the centre.

    Args:
        output_size: Wanted output height or width in pixels (>= 1).
        depth: Number of pooling steps of the network.

    Returns:
        An input side length accepted by :func:`valid_output_size` (``572`` for ``388``).
    """
    check_int(output_size, "output_size", minimum=1)
    check_int(depth, "depth", minimum=1)
    scale = 2**depth
    bottleneck = math.ceil((output_size + 4 * (scale - 1)) / scale)
    smallest, _ = _bottleneck_bounds(0, depth)
    return _input_for_bottleneck(max(bottleneck, smallest), depth)


class UNet(nn.Module):
    """U-Net: encoder of double 3x3 convolutions, bottleneck, decoder with skips, 1x1 head.

    Args:
        in_channels: Input bands ``C``.
        num_classes: Output channels ``K``; 1 for a binary mask (apply a sigmoid), otherwise one
            logit per class (apply a softmax), see :func:`geounet.models.predict_proba`.
        config: Architecture options; defaults to :class:`UNetConfig` ``()`` (depth 4, base 64,
            BatchNorm, transposed convolutions, same padding, no dropout).

    Raises:
        ConfigError: If an argument or option is invalid.
    """

    def __init__(  # noqa: D107
        self, in_channels: int, num_classes: int, *, config: UNetConfig | None = None
    ) -> None:
        super().__init__()
        check_io(in_channels, num_classes)
        self.config = config or UNetConfig()
        self.in_channels = in_channels
        self.num_classes = num_classes
        cfg = self.config
        block = functools.partial(
            ConvBlock, batch_norm=cfg.batch_norm, padding=cfg.padding, dropout=cfg.dropout
        )
        self.encoder = Encoder(in_channels, cfg.channels, block=block)
        self.decoder = Decoder(cfg.channels, block, up_mode=cfg.up_mode)
        self.head = conv1x1(cfg.base_channels, num_classes)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output ``(height, width)`` for an input of ``(height, width)``.

        Raises:
            ChipSizeError: For ``valid`` padding and a size that does not pool evenly.
        """
        if self.config.padding == Padding.SAME:
            return height, width
        depth = self.config.depth
        return valid_output_size(height, depth=depth), valid_output_size(width, depth=depth)

    def forward(self, x: Tensor) -> Tensor:
        """Predict logits.

        Args:
            x: ``B x C x H x W`` float tensor, any H and W for ``same`` padding.

        Returns:
            ``B x K x H' x W'`` logits; ``H', W' = H, W`` for ``same`` padding, else
            :meth:`output_size`.

        Raises:
            BandMismatchError: If ``x`` does not have ``in_channels`` channels.
            ChipSizeError: For ``valid`` padding and a size that does not pool evenly.
        """
        check_input(x, self.in_channels, ndim=4)
        height, width = x.shape[-2], x.shape[-1]
        if self.config.padding == Padding.VALID:
            self.output_size(height, width)
            return self._logits(x)
        return run_padded(x, 2**self.config.depth, self._logits)

    def _logits(self, x: Tensor) -> Tensor:
        return self.head(self.decoder(self.encoder(x)))  # type: ignore[no-any-return]
