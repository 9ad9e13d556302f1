"""Layers shared by the U-Net family: convolution blocks, upsampling, attention gates.

Blocks work in 2D (``dims=2``: ``B x C x H x W``) or 3D (``dims=3``: ``B x C x T x H x W``, where
only H and W are pooled and upsampled, so any number of dates T works).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geounet.errors import BandMismatchError
from geounet.models._config import Padding, UpMode

BlockFactory = Callable[[int, int], nn.Module]
"""Builds a block from (input channels, output channels)."""

GateFactory = Callable[[int], nn.Module]
"""Builds a skip gate for a level with the given number of channels."""

_CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_DROP: dict[int, type[nn.Module]] = {2: nn.Dropout2d, 3: nn.Dropout3d}
_CONV_T: dict[int, type[nn.Module]] = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL: dict[int, type[nn.Module]] = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def spatial_scale(dims: int) -> int | tuple[int, int, int]:
    """Kernel and stride that halve (pool) or double (upsample) H and W but never T."""
    return 2 if dims == 2 else (1, 2, 2)


def make_pool(dims: int) -> nn.Module:
    """2x2 max pooling over H and W."""
    scale = spatial_scale(dims)
    return _POOL[dims](kernel_size=scale, stride=scale)


def conv1x1(in_channels: int, out_channels: int, *, dims: int = 2) -> nn.Module:
    """A 1x1 (or 1x1x1) convolution with bias."""
    return _CONV[dims](in_channels, out_channels, kernel_size=1)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by optional BatchNorm and ReLU.

    This is the block of the paper: ``conv3x3 -> [BN] -> ReLU -> conv3x3 -> [BN] -> ReLU``,
    then ``Dropout2d`` when ``dropout > 0``. Convolutions carry a bias only without BatchNorm.

    Args:
        in_channels: Input channels.
        out_channels: Output channels of both convolutions.
        batch_norm: Add BatchNorm after each convolution.
        padding: ``same`` keeps H and W; ``valid`` trims 2 pixels per side.
        dropout: Channel dropout probability after the block.
        dims: 2 for images, 3 for ``B x C x T x H x W`` stacks (3x3x3 kernels, T kept).
    """

    def __init__(  # noqa: D107
        self,
        in_channels: int,
        out_channels: int,
        *,
        batch_norm: bool = True,
        padding: Padding = Padding.SAME,
        dropout: float = 0.0,
        dims: int = 2,
    ) -> None:
        pad = 1 if padding == Padding.SAME else 0
        layers: list[nn.Module] = []
        for channels in (in_channels, out_channels):
            layers.append(
                _CONV[dims](channels, out_channels, kernel_size=3, padding=pad, bias=not batch_norm)
            )
            if batch_norm:
                layers.append(_NORM[dims](out_channels))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(_DROP[dims](dropout))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """A ResNet basic block: two 3x3 convolutions plus an identity (or 1x1) shortcut.

    ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))`` with ``same`` padding. The shortcut is
    a 1x1 convolution (and BatchNorm) when the channels change.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        batch_norm: Add BatchNorm after each convolution.
        dropout: Channel dropout probability after the block.
    """

    def __init__(  # noqa: D107
        self, in_channels: int, out_channels: int, *, batch_norm: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()

        def norm() -> nn.Module:
            return nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()

        bias = not batch_norm
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.norm1 = norm()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        self.norm2 = norm()
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=bias), norm()
            )
        self.dropout: nn.Module = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``B x C x H x W`` features."""
        out = F.relu(self.norm1(self.conv1(x)), inplace=True)
        out = self.norm2(self.conv2(out))
        return self.dropout(F.relu(out + self.shortcut(x), inplace=True))


class Upsample(nn.Module):
    """Double H and W and map ``in_channels`` to ``out_channels``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (half the input in a U-Net).
        mode: ``transpose`` (2x2 transposed convolution, stride 2) or ``bilinear``
            (bilinear/trilinear interpolation, then a 1x1 convolution).
        dims: 2 or 3; in 3D the time axis is not upsampled.
    """

    def __init__(  # noqa: D107
        self, in_channels: int, out_channels: int, *, mode: UpMode, dims: int = 2
    ) -> None:
        super().__init__()
        scale = spatial_scale(dims)
        self.mode = mode
        self.scale: tuple[float, ...] = (2.0, 2.0) if dims == 2 else (1.0, 2.0, 2.0)
        self.conv: nn.Module
        if mode == UpMode.TRANSPOSE:
            self.conv = _CONV_T[dims](in_channels, out_channels, kernel_size=scale, stride=scale)
        else:
            self.conv = conv1x1(in_channels, out_channels, dims=dims)

    def forward(self, x: Tensor) -> Tensor:
        """Upsample ``x``."""
        if self.mode == UpMode.TRANSPOSE:
            return self.conv(x)  # type: ignore[no-any-return]
        interp = "bilinear" if x.dim() == 4 else "trilinear"
        x = F.interpolate(x, scale_factor=self.scale, mode=interp, align_corners=False)
        return self.conv(x)  # type: ignore[no-any-return]


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al., 2018).

    ``alpha = sigmoid(psi(ReLU(W_g g + W_x x)))`` and the gate returns ``x * alpha``, where
    ``x`` is the encoder feature map of a level and ``g`` (the gating signal) is the decoder
    feature map after upsampling to the same resolution. Computing the gate at the skip's
    resolution (rather than from the coarser level with a strided ``W_x``) keeps it valid for any
    input size; this is the common simplification of the paper.

    Args:
        channels: Channels of both ``g`` and ``x``.
        batch_norm: Add BatchNorm after each 1x1 convolution.
    """

    def __init__(self, channels: int, *, batch_norm: bool = True) -> None:  # noqa: D107
        super().__init__()
        inter = max(channels // 2, 1)

        def branch(cin: int, cout: int) -> nn.Module:
            conv = nn.Conv2d(cin, cout, 1, bias=not batch_norm)
            return nn.Sequential(conv, nn.BatchNorm2d(cout)) if batch_norm else conv

        self.w_g = branch(channels, inter)
        self.w_x = branch(channels, inter)
        self.psi = nn.Sequential(branch(inter, 1), nn.Sigmoid())

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        """Return the skip features ``x`` weighted by attention coefficients in [0, 1]."""
        alpha = self.psi(F.relu(self.w_g(g) + self.w_x(x)))
        return x * alpha


class Encoder(nn.Module):
    """Contracting path: a block per level, 2x2 max pooling between levels.

    Args:
        in_channels: Input bands.
        channels: Channels per level, the last one being the bottleneck.
        block: Builds a level's block from (input channels, output channels).
        dims: 2 or 3.
    """

    def __init__(  # noqa: D107
        self, in_channels: int, channels: Sequence[int], *, block: BlockFactory, dims: int = 2
    ) -> None:
        super().__init__()
        ins = [in_channels, *channels[:-1]]
        self.blocks = nn.ModuleList(
            block(cin, cout) for cin, cout in zip(ins, channels, strict=True)
        )
        self.pool = make_pool(dims)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the feature map of every level, shallowest first, bottleneck last."""
        features = []
        for index, block in enumerate(self.blocks):
            if index:
                x = self.pool(x)
            x = block(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """Expanding path: upsample, (gate the skip,) concatenate the skip, apply a block.

    Args:
        channels: Channels per level, as given to the :class:`Encoder`.
        block: Builds a level's block; it receives ``2 * channels[level]`` input channels.
        up_mode: How each level upsamples.
        gate: Optional factory of a skip gate (e.g. :class:`AttentionGate`) per level.
        dims: 2 or 3.
    """

    def __init__(  # noqa: D107
        self,
        channels: Sequence[int],
        block: BlockFactory,
        *,
        up_mode: UpMode,
        gate: GateFactory | None = None,
        dims: int = 2,
    ) -> None:
        super().__init__()
        levels = list(range(len(channels) - 2, -1, -1))  # deepest skip first
        self.ups = nn.ModuleList(
            Upsample(channels[lvl + 1], channels[lvl], mode=up_mode, dims=dims) for lvl in levels
        )
        self.blocks = nn.ModuleList(block(2 * channels[lvl], channels[lvl]) for lvl in levels)
        self.gates = nn.ModuleList(gate(channels[lvl]) for lvl in levels) if gate else None

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Decode encoder ``features`` (shallowest first) into the first level's features."""
        x = features[-1]
        skips = features[-2::-1]
        for index, (up, block) in enumerate(zip(self.ups, self.blocks, strict=True)):
            x = up(x)
            # With valid padding the skip is larger than x: crop its centre (the paper's crop).
            skip = center_crop(skips[index], x.shape[-2], x.shape[-1])
            if self.gates is not None:
                skip = self.gates[index](x, skip)
            x = block(torch.cat([skip, x], dim=1))
        return x


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the last two dims (H, W) at the bottom and right up to a multiple of ``multiple``.

    Reflection padding is used, so the network sees plausible content rather than a zero edge;
    when an input is too small to reflect (padding >= size), edge replication is used instead.
    Inputs that already fit are returned unchanged (no copy).
    """
    height, width = x.shape[-2], x.shape[-1]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    pad = (0, pad_w, 0, pad_h) if x.dim() == 4 else (0, pad_w, 0, pad_h, 0, 0)
    return F.pad(x, pad, mode=mode)


def crop_to(x: Tensor, height: int, width: int) -> Tensor:
    """Keep the top-left ``height x width`` of the last two dims (undoes `pad_to_multiple`)."""
    if x.shape[-2] == height and x.shape[-1] == width:
        return x
    return x[..., :height, :width]


def center_crop(x: Tensor, height: int, width: int) -> Tensor:
    """Keep the central ``height x width`` of the last two dims."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    if top == 0 and left == 0 and x.shape[-2] == height and x.shape[-1] == width:
        return x
    return x[..., top : top + height, left : left + width]


def check_input(x: Tensor, in_channels: int, *, ndim: int) -> None:
    """Check a model input's rank and channel count before running the network.

    Raises:
        ValueError: If ``x`` does not have ``ndim`` dimensions.
        BandMismatchError: If ``x`` does not have ``in_channels`` channels (dim 1).
    """
    if x.dim() != ndim:
        layout = "B x C x H x W" if ndim == 4 else "B x C x T x H x W"
        raise ValueError(
            f"Expected a {ndim}-D input ({layout}), got shape {tuple(x.shape)}."
            + (" Add a batch dimension with x.unsqueeze(0)." if x.dim() == ndim - 1 else "")
        )
    if x.shape[1] != in_channels:
        raise BandMismatchError(
            f"The model was built for {in_channels} input bands but the input has "
            f"{x.shape[1]} (shape {tuple(x.shape)}); select the bands the model was trained on."
        )


def run_padded(x: Tensor, multiple: int, net: Callable[[Tensor], Tensor]) -> Tensor:
    """Run ``net`` on ``x`` padded to a multiple of ``multiple``, then crop back to H x W."""
    height, width = x.shape[-2], x.shape[-1]
    return crop_to(net(pad_to_multiple(x, multiple)), height, width)
