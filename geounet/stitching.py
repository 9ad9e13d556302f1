"""Mergers that blend overlapping chip outputs into finished rows of the scene.

Whole-scene prediction runs the model on overlapping chips; :class:`BlendMerger` turns their
outputs back into one scene-sized result. Each chip's values are weighted by a *blend window*
(Gaussian, raised cosine or a hard crop) so that no seam shows where chips meet, and the weighted
sums are kept in a rolling strip of rows, so memory depends on the chip height and the scene
width, never on the scene height (DESIGN.md, "Prediction").

Chips must arrive with non-decreasing ``row_off`` (row-major order, the order
``geounet.inference`` reads them in). Every scene row above the current chip's ``row_off`` is then
final, and :meth:`BlendMerger.add` hands those rows back as :class:`MergedStrip` objects, ready to
be written window by window::

    merger = BlendMerger((height, width), num_classes, (256, 256), blend="cosine", overlap=64)
    for values, window in chip_outputs:          # values: (C, h, w) float32
        for strip in merger.add(values, window):
            dst.write(to_uint8_probabilities(strip.values), window=strip.window)
    for strip in merger.finalize():
        dst.write(to_uint8_probabilities(strip.values), window=strip.window)

Nodata is the driver's business: it masks invalid pixels with its own valid mask after merging.
Pixels that no chip covered (a chip skipped as mostly nodata, say) come back as NaN.

The design follows MONAI's ``AvgMerger`` and ``compute_importance_map``, with three changes:
weights are built per chip from which sides face a neighbour (a chip's side on the scene border
is never tapered), sums are kept in float64 so that blending equal values returns them exactly,
and rows are released as soon as they are final.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from rasterio.windows import Window

from geounet.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "BLEND_WINDOWS",
    "AxisLayout",
    "BlendMerger",
    "MergedStrip",
    "cosine_window",
    "crop_window",
    "gaussian_window",
    "to_uint8_probabilities",
]

# Per-pixel state of the accumulator: untouched, holding a plain mean of zero-weight chips
# (the fallback), or holding a weighted sum.
_EMPTY, _FALLBACK, _WEIGHTED = 0, 1, 2


@dataclass(frozen=True)
class AxisLayout:
    """Where a chip sits along one axis (rows or columns), as a blend window sees it.

    Attributes:
        size: The chip's length along the axis in pixels; an edge chip clipped by the scene
            border may be shorter than ``chip_size``.
        chip_size: The nominal chip length in pixels.
        overlap: The nominal overlap of neighbouring chips in pixels (``chip_size - stride``).
        margin: Pixels at each interior edge that get zero weight.
        lead_neighbour: Whether another chip can overlap the leading side (top or left), i.e.
            the chip does not start on the scene border.
        trail_neighbour: Whether another chip can overlap the trailing side (bottom or right).
    """

    size: int
    chip_size: int
    overlap: int
    margin: int
    lead_neighbour: bool
    trail_neighbour: bool


BlendWindow = Callable[[AxisLayout], np.ndarray]
"""A 1-D weight profile ``(size,)`` >= 0 for one axis; the chip's weights are the outer product."""


def gaussian_window(axis: AxisLayout, sigma_scale: float = 0.125) -> np.ndarray:
    """A Gaussian centred on the chip, flat towards sides that lie on the scene border.

    Like MONAI's ``compute_importance_map(mode="gaussian", sigma_scale=0.125)``: sigma is
    ``sigma_scale * chip_size``, so the weight at a full chip's edge is ``exp(-8)``, small but
    never zero. On a side without a neighbour the profile stays at its peak from the centre to
    the edge, because nothing else covers those pixels and the model saw them with the same
    (scene-border) context as a whole-scene run would. Bind another ``sigma_scale`` with
    ``functools.partial``.

    Args:
        axis: The chip's layout along this axis.
        sigma_scale: Sigma as a fraction of ``axis.chip_size``.

    Returns:
        float64 weights, shape ``(axis.size,)``, in ``(0, 1]``.
    """
    index = np.arange(axis.size, dtype=np.float64)
    centre = (axis.size - 1) / 2.0
    sigma = sigma_scale * axis.chip_size
    weights = np.exp(-0.5 * ((index - centre) / sigma) ** 2)
    if not axis.lead_neighbour:
        weights[index <= centre] = 1.0
    if not axis.trail_neighbour:
        weights[index >= centre] = 1.0
    return weights


def _cosine_ramp(axis: AxisLayout) -> np.ndarray:
    """Leading-side ramp: 0 over the margin, sin^2 up to 1 across the rest of the overlap band."""
    band = axis.overlap - 2 * axis.margin
    index = np.arange(axis.size, dtype=np.float64)
    ramp = np.ones(axis.size)
    ramp[index < axis.margin] = 0.0
    if band > 0:
        # Half-pixel centres make the ramps of two chips overlapping by exactly `overlap` sum to
        # one (sin^2 + cos^2) and keep every weight inside the band strictly positive.
        inside = (index >= axis.margin) & (index < axis.margin + band)
        ramp[inside] = np.sin(0.5 * np.pi * (index[inside] - axis.margin + 0.5) / band) ** 2
    return ramp


def cosine_window(axis: AxisLayout) -> np.ndarray:
    """A raised-cosine (Hann) taper across the overlap band on each side with a neighbour.

    The weight is 0 over ``margin`` pixels, rises as ``sin^2`` across the remaining
    ``overlap - 2 * margin`` pixels and is 1 in the chip's centre, so on a regular grid the
    weights of neighbouring chips sum to one. Sides on the scene border are not tapered.

    Args:
        axis: The chip's layout along this axis.

    Returns:
        float64 weights, shape ``(axis.size,)``, in ``[0, 1]``.
    """
    weights = np.ones(axis.size)
    ramp = _cosine_ramp(axis)
    if axis.lead_neighbour:
        weights *= ramp
    if axis.trail_neighbour:
        weights *= ramp[::-1]
    return weights


def crop_window(axis: AxisLayout) -> np.ndarray:
    """Keep each chip's centre: weight 1 there, 0 in the half of the overlap next to a neighbour.

    The leading side drops ``overlap // 2`` pixels and the trailing side ``overlap - overlap // 2``
    so that on a regular grid the kept centres tile the scene exactly and each pixel takes the
    value of the one chip whose centre owns it (U-Net's overlap-tile strategy). Where chips
    overlap more than nominally (an edge chip shifted inward) kept centres overlap and are
    averaged. Sides on the scene border keep everything.

    Args:
        axis: The chip's layout along this axis.

    Returns:
        float64 weights, shape ``(axis.size,)``, each 0 or 1.
    """
    weights = np.ones(axis.size)
    if axis.lead_neighbour:
        weights[: max(axis.margin, axis.overlap // 2)] = 0.0
    if axis.trail_neighbour:
        drop = max(axis.margin, axis.overlap - axis.overlap // 2)
        weights[axis.size - min(drop, axis.size) :] = 0.0
    return weights


BLEND_WINDOWS: Mapping[str, BlendWindow] = {
    "gaussian": gaussian_window,
    "cosine": cosine_window,
    "crop": crop_window,
}
"""Blend windows by name; :class:`BlendMerger` also takes any :data:`BlendWindow` callable."""

BlendName = Literal["gaussian", "cosine", "crop"]


def _look_up_blend(blend: BlendName | BlendWindow) -> BlendWindow:
    """Resolve a blend window name (or pass a callable through)."""
    if callable(blend):
        return blend
    if isinstance(blend, str) and blend in BLEND_WINDOWS:
        return BLEND_WINDOWS[blend]
    close = difflib.get_close_matches(str(blend), list(BLEND_WINDOWS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown blend window {blend!r}; expected one of {sorted(BLEND_WINDOWS)} or a callable "
        f"taking an AxisLayout.{hint}"
    )


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """Expand an int to ``(rows, cols)`` and check that both are integers >= 0."""
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and v >= 0 for v in pair):
        raise ConfigError(f"{name} must be an int >= 0 or a (rows, cols) pair, got {value!r}.")
    return int(pair[0]), int(pair[1])


def _window_ints(window: Window) -> tuple[int, int, int, int]:
    """``(row_off, col_off, height, width)`` of a window whose numbers must be integers."""
    numbers = (window.row_off, window.col_off, window.height, window.width)
    if not all(float(v).is_integer() for v in numbers):
        raise ValueError(f"chip window {window} needs integer offsets and sizes; round it first.")
    row_off, col_off, height, width = (int(v) for v in numbers)
    return row_off, col_off, height, width


class MergedStrip(NamedTuple):
    """Finished full-width rows of the merged output.

    Attributes:
        window: The rows in scene pixel coordinates (``col_off`` 0, full scene width).
        values: float32 ``(C, window.height, scene width)``; NaN where no chip covered a pixel.
    """

    window: Window
    values: np.ndarray


class BlendMerger:
    """Blend overlapping chip outputs with a weight window, releasing finished rows as it goes.

    Each output pixel is ``sum(w_i * v_i) / sum(w_i)`` over the chips covering it, where ``w_i`` is
    the chip's blend window at that pixel. Sums are kept in float64 and cast to float32 once, so
    when every chip gives a pixel the same float32 value (a per-pixel model) the output equals it
    exactly: the float64 rounding of a handful of products is about 1e-15 relative, far below
    float32's half-ulp of 3e-8. A pixel that every covering chip gives zero weight (a margin wider
    than the chips' actual overlap, or a neighbour that was skipped) takes the plain mean of
    those chips instead of becoming a hole; any positive weight later replaces that fallback.

    The accumulator is a strip of ``min(chip height, scene height)`` rows by the scene width:
    ``(C + 1) * 8 + 1`` bytes per pixel of it (about 115 MB for 4 classes, 256-row chips and a
    10980-pixel-wide Sentinel-2 tile).

    Args:
        shape: Scene ``(height, width)`` in pixels.
        num_channels: Channels ``C`` of each chip's values (classes).
        chip_size: Nominal chip size, an int or ``(rows, cols)``; no chip may be larger.
        blend: A :data:`BLEND_WINDOWS` name or a :data:`BlendWindow` callable.
        overlap: Nominal overlap of neighbouring chips (``chip_size - stride``), an int or
            ``(rows, cols)``; the cosine taper and the crop are sized from it.
        margin: Pixels at a chip's interior edges given zero weight (a convolutional model's
            unreliable border), an int or ``(rows, cols)``, at most half the overlap.

    Raises:
        ConfigError: For an unknown blend name or sizes that do not fit together.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        num_channels: int,
        chip_size: int | tuple[int, int],
        *,
        blend: BlendName | BlendWindow = "gaussian",
        overlap: int | tuple[int, int] = 0,
        margin: int | tuple[int, int] = 0,
    ) -> None:
        height, width = _pair(tuple(shape), "shape")
        self.chip_size = _pair(chip_size, "chip_size")
        self.overlap = _pair(overlap, "overlap")
        self.margin = _pair(margin, "margin")
        if min(height, width, num_channels, *self.chip_size) < 1:
            raise ConfigError(
                f"shape {shape}, num_channels {num_channels} and chip_size {chip_size} must all "
                "be >= 1."
            )
        for axis, name in enumerate(("rows", "cols")):
            if self.overlap[axis] >= self.chip_size[axis]:
                raise ConfigError(
                    f"overlap {self.overlap[axis]} ({name}) must be smaller than the chip size "
                    f"{self.chip_size[axis]}: the stride would be <= 0."
                )
            if 2 * self.margin[axis] > self.overlap[axis]:
                raise ConfigError(
                    f"margin {self.margin[axis]} ({name}) must be at most half the overlap "
                    f"{self.overlap[axis]}, or pixels between chips get no weight; raise the "
                    "overlap or lower the margin."
                )
        self.shape = (height, width)
        self.num_channels = int(num_channels)
        self._window_fn = _look_up_blend(blend)
        rows = min(self.chip_size[0], height)
        self._acc = np.zeros((self.num_channels, rows, width), np.float64)
        self._wsum = np.zeros((rows, width), np.float64)
        self._state = np.zeros((rows, width), np.uint8)
        self._scratch = np.empty((self.num_channels, *self.chip_size), np.float64)
        self._weights: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, bool]] = {}
        self._top = 0  # scene row held in buffer row 0; every row above it has been released
        self._finished = False
        logger.debug(
            "BlendMerger %s x %d: %d-row strip, %d bytes", shape, num_channels, rows, self.nbytes
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the accumulator strip, a scratch chip and the cached weight windows."""
        cached = sum(w.nbytes + p.nbytes for w, p, _ in self._weights.values())
        buffers = (self._acc, self._wsum, self._state, self._scratch)
        return sum(b.nbytes for b in buffers) + cached

    def add(self, values: np.ndarray, window: Window) -> list[MergedStrip]:
        """Blend one chip's output in and return the rows that are now final.

        Args:
            values: The chip's output, ``(C, window.height, window.width)``, floating point
                (float32 probabilities or logits).
            window: The chip's window in scene pixel coordinates, integer offsets and sizes,
                inside the scene, no larger than ``chip_size``; its ``row_off`` must not be
                smaller than that of any chip added before.

        Returns:
            The finished strips above ``window.row_off``, top to bottom (often none).

        Raises:
            ValueError: For a malformed chip, a window outside the scene, a chip out of
                row-major order, or a call after :meth:`finalize`.
        """
        row_off, col_off, height, width = self._check_chip(values, window)
        strips = list(self._release(row_off))
        weights, positive, all_positive = self._chip_weights(row_off, col_off, height, width)
        cols = slice(col_off, col_off + width)
        acc = self._acc[:, :height, cols]
        wsum = self._wsum[:height, cols]
        state = self._state[:height, cols]
        held_fallback = positive & (state == _FALLBACK)
        if held_fallback.any():  # a real weight replaces a plain-mean fallback
            np.copyto(acc, 0.0, where=held_fallback)
            np.copyto(wsum, 0.0, where=held_fallback)
        fallback = None if all_positive else ~positive & (state != _WEIGHTED)
        if fallback is not None and fallback.any():
            weights = np.where(fallback, 1.0, weights)  # disjoint from the positive weights
        # One reused scratch buffer: a fresh multi-MB array per chip costs page faults.
        product = np.multiply(values, weights, out=self._scratch[:, :height, :width])
        if all_positive or np.isfinite(values).all():
            acc += product
        else:  # 0 * NaN is NaN: a NaN in a dropped margin must not leak in (and `where=` is slow)
            np.add(acc, product, out=acc, where=weights > 0)
        wsum += weights
        if fallback is None:
            state.fill(_WEIGHTED)
        else:
            np.copyto(state, _FALLBACK, where=fallback)
            np.copyto(state, _WEIGHTED, where=positive)
        return strips

    def finalize(self) -> list[MergedStrip]:
        """Return every row not released yet; the merger takes no chips afterwards.

        Returns:
            The remaining strips, top to bottom, down to the last scene row.

        Raises:
            ValueError: When called twice.
        """
        if self._finished:
            raise ValueError("finalize() was already called; create a new BlendMerger.")
        strips = list(self._release(self.shape[0]))
        self._finished = True
        return strips

    def _check_chip(self, values: np.ndarray, window: Window) -> tuple[int, int, int, int]:
        """Validate one chip; return its window as integers."""
        if self._finished:
            raise ValueError("add() after finalize(); create a new BlendMerger for another scene.")
        row_off, col_off, height, width = _window_ints(window)
        scene_h, scene_w = self.shape
        if row_off < 0 or col_off < 0 or row_off + height > scene_h or col_off + width > scene_w:
            raise ValueError(f"chip window {window} lies outside the {scene_h} x {scene_w} scene.")
        if not 1 <= height <= self.chip_size[0] or not 1 <= width <= self.chip_size[1]:
            raise ValueError(
                f"chip window {window} is empty or larger than chip_size {self.chip_size}; "
                "create the merger with the chip size the model runs on."
            )
        expected = (self.num_channels, height, width)
        if not isinstance(values, np.ndarray) or values.shape != expected:
            got = getattr(values, "shape", type(values).__name__)
            raise ValueError(
                f"chip values must be a numpy array of shape (C, h, w) = {expected}, got {got}; "
                "move tensors to the CPU with .numpy() and crop padding first."
            )
        if not np.issubdtype(values.dtype, np.floating):
            raise ValueError(f"chip values must be floating point, got {values.dtype}.")
        if row_off < self._top:
            raise ValueError(
                f"chip at row_off {row_off} arrived after rows up to {self._top} were released; "
                "add chips in row-major order (non-decreasing row_off)."
            )
        return row_off, col_off, height, width

    def _chip_weights(
        self, row_off: int, col_off: int, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """The (cached) 2-D weights of a chip, its positive mask, and whether all are positive."""
        scene_h, scene_w = self.shape
        key = (
            height,
            width,
            row_off > 0,
            row_off + height < scene_h,
            col_off > 0,
            col_off + width < scene_w,
        )
        cached = self._weights.get(key)
        if cached is None:
            rows = self._profile(
                AxisLayout(
                    height, self.chip_size[0], self.overlap[0], self.margin[0], key[2], key[3]
                )
            )
            cols = self._profile(
                AxisLayout(
                    width, self.chip_size[1], self.overlap[1], self.margin[1], key[4], key[5]
                )
            )
            weights = np.outer(rows, cols)
            positive = weights > 0
            cached = (weights, positive, bool(positive.all()))
            self._weights[key] = cached
        return cached

    def _profile(self, axis: AxisLayout) -> np.ndarray:
        """Call the blend window, check its output and zero the margins."""
        profile = np.array(self._window_fn(axis), dtype=np.float64)
        if profile.shape != (axis.size,) or not np.all(np.isfinite(profile)) or (profile < 0).any():
            raise ConfigError(
                f"blend window {self._window_fn!r} must return finite weights >= 0 of shape "
                f"({axis.size},) for {axis}, got shape {profile.shape}."
            )
        # The margin holds for any window, including a user's callable.
        if axis.lead_neighbour:
            profile[: axis.margin] = 0.0
        if axis.trail_neighbour and axis.margin:
            profile[-axis.margin :] = 0.0
        return profile

    def _release(self, upto: int) -> Iterator[MergedStrip]:
        """Yield rows ``[top, upto)`` and roll the strip down so that ``upto`` is its first row."""
        scene_w = self.shape[1]
        buffered = min(upto - self._top, self._acc.shape[1])
        if buffered > 0:
            merged = np.empty((self.num_channels, buffered, scene_w), np.float32)
            with np.errstate(invalid="ignore", divide="ignore"):
                # Divided in float64, rounded once to float32; 0 / 0 makes uncovered pixels NaN.
                np.divide(
                    self._acc[:, :buffered], self._wsum[:buffered], out=merged, casting="same_kind"
                )
            yield MergedStrip(Window(0, self._top, scene_w, buffered), merged)
            keep = self._acc.shape[1] - buffered
            for buf in (self._acc[:, :], self._wsum[None], self._state[None]):
                buf[:, :keep] = buf[:, buffered:]
                buf[:, keep:] = 0
        # Rows below the strip that no chip touched: read-only NaN views that cost no memory.
        row = self._top + max(buffered, 0)
        while row < upto:
            rows = min(upto - row, self._acc.shape[1])
            nan = np.broadcast_to(np.float32(np.nan), (self.num_channels, rows, scene_w))
            yield MergedStrip(Window(0, row, scene_w, rows), nan)
            row += rows
        self._top = max(self._top, upto)


def to_uint8_probabilities(probs: np.ndarray) -> np.ndarray:
    """Quantise probabilities in [0, 1] to uint8 0-255 for the probabilities raster.

    ``q = round(255 * clip(p, 0, 1))`` with round-half-to-even, so ``q / 255`` is within
    ``1 / 510`` of ``p``. NaN (pixels no chip covered) becomes 0; the class raster, not this
    one, carries nodata.

    Args:
        probs: Probabilities of any shape, floating point.

    Returns:
        uint8 array of the same shape.
    """
    scaled = np.rint(np.clip(np.asarray(probs, dtype=np.float32), 0.0, 1.0) * np.float32(255.0))
    return np.nan_to_num(scaled, nan=0.0).astype(np.uint8)
