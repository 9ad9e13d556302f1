"""Tests for geounet.stitching: exact blending, seamless conv tiling, bounded memory."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from geounet.errors import ConfigError
from geounet.stitching import (
    BLEND_WINDOWS,
    AxisLayout,
    BlendMerger,
    gaussian_window,
    to_uint8_probabilities,
)


def _starts(length: int, chip: int, overlap: int, layout: str) -> list[tuple[int, int]]:
    """(offset, size) of chips on one axis; 'shift' moves the last chip inward, 'clip' cuts it."""
    stride = chip - overlap
    if length <= chip:
        return [(0, length)]
    if layout == "shift":
        offsets = list(range(0, length - chip + 1, stride))
        if offsets[-1] + chip < length:
            offsets.append(length - chip)
        return [(o, chip) for o in offsets]
    offsets = [o for o in range(0, length, stride) if o == 0 or o + overlap < length]
    return [(o, min(chip, length - o)) for o in offsets]


def chip_windows(shape, chip, overlap, layout="shift"):
    """Row-major chip windows over a scene (a local stand-in for geounet.grid)."""
    rows = _starts(shape[0], chip[0], overlap[0], layout)
    cols = _starts(shape[1], chip[1], overlap[1], layout)
    return [Window(c, r, w, h) for r, h in rows for c, w in cols]


def merge(merger, scene_values, windows, model=None):
    """Feed chips through a merger, check the strips come in order, return the stitched scene."""
    channels, height, width = merger.num_channels, *merger.shape
    out = np.full((channels, height, width), -12345.0, np.float32)
    next_row = 0

    def take(strips):
        nonlocal next_row
        for window, values in strips:
            assert window.row_off == next_row and window.col_off == 0 and window.width == width
            assert values.dtype == np.float32 and values.shape == (channels, window.height, width)
            out[:, window.row_off : window.row_off + window.height] = values
            next_row += window.height

    for window in windows:
        rows, cols = window.toslices()
        chip = scene_values[:, rows, cols] if model is None else model(window)
        take(merger.add(chip, window))
    take(merger.finalize())
    assert next_row == height
    return out


def random_scene(rng, shape, channels):
    """float32 values over a wide range of magnitudes, with zeros and subnormals."""
    mantissa = rng.standard_normal((channels, *shape))
    exponent = rng.integers(-40, 38, size=(channels, *shape)).astype(np.float64)
    values = (mantissa * 10.0**exponent).astype(np.float32)
    values[rng.random(values.shape) < 0.05] = 0.0
    return values


@settings(max_examples=150, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    chip_h=st.integers(1, 16),
    chip_w=st.integers(1, 16),
    overlap_frac=st.floats(0, 0.95),
    margin_frac=st.floats(0, 1),
    blend=st.sampled_from(sorted(BLEND_WINDOWS)),
    layout=st.sampled_from(["shift", "clip"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_per_pixel_model_is_merged_exactly(
    height, width, chip_h, chip_w, overlap_frac, margin_frac, blend, layout, seed
):
    """Every chip gives a pixel the same value -> the merged value is that value, bit for bit."""
    rng = np.random.default_rng(seed)
    chip = (chip_h, chip_w)
    overlap = tuple(int(overlap_frac * c) for c in chip)
    margin = tuple(int(margin_frac * (o // 2)) for o in overlap)
    scene = random_scene(rng, (height, width), channels=3)
    windows = chip_windows((height, width), chip, overlap, layout)
    # Any order inside a chip row is allowed: shuffle columns, keep rows ascending.
    rng.shuffle(windows)
    windows.sort(key=lambda w: w.row_off)
    merger = BlendMerger((height, width), 3, chip, blend=blend, overlap=overlap, margin=margin)
    out = merge(merger, scene, windows)
    # == equality (a -0.0 may come back as +0.0), and no NaN anywhere.
    np.testing.assert_array_equal(out, scene)


def _conv_model(seed: int) -> torch.nn.Module:
    """Two 3x3 convs (receptive-field half-width 2) with small integer weights.

    Integer weights and inputs keep every float32 sum exact, so tiled and whole-scene runs agree
    bit for bit whatever algorithm torch picks; any difference is the merger's.
    """
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 3, 3, padding=1),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=gen).float())
    return model.eval()


@pytest.fixture(scope="module")
def conv_case():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 10, size=(2, 97, 83)).astype(np.float32)
    model = _conv_model(3)
    with torch.no_grad():
        whole = model(torch.from_numpy(image)[None])[0].numpy()

    def run_chip(window):
        rows, cols = window.toslices()
        chip = torch.from_numpy(np.ascontiguousarray(image[:, rows, cols]))
        with torch.no_grad():
            return model(chip[None])[0].numpy()

    return image, whole, run_chip


@pytest.mark.parametrize("layout", ["shift", "clip"])
@pytest.mark.parametrize(
    ("blend", "overlap", "margin"),
    [
        ("crop", 4, 0),
        ("crop", 10, 0),
        ("crop", 8, 2),
        ("gaussian", 8, 2),
        ("cosine", 4, 2),
        ("cosine", 12, 2),
    ],
)
def test_conv_model_tiles_exactly_when_margin_covers_receptive_field(
    conv_case, blend, overlap, margin, layout
):
    """Zero weight on >= 2 border pixels (half-width 2): tiled == whole scene, everywhere."""
    image, whole, run_chip = conv_case
    shape = image.shape[1:]
    windows = chip_windows(shape, (32, 24), (overlap, overlap), layout)
    merger = BlendMerger(shape, 3, (32, 24), blend=blend, overlap=overlap, margin=margin)
    out = merge(merger, None, windows, model=run_chip)
    # The scene border is included: a chip's side on the border sees the same zero padding.
    np.testing.assert_array_equal(out, whole)


@pytest.mark.parametrize("blend", ["gaussian", "cosine"])
def test_conv_model_smooth_blend_without_margin_is_close(conv_case, blend):
    """Without a margin a chip's wrong border pixels get small weights: a small, bounded error."""
    image, whole, run_chip = conv_case
    shape = image.shape[1:]
    windows = chip_windows(shape, (32, 32), (16, 16))
    merger = BlendMerger(shape, 3, 32, blend=blend, overlap=16)
    out = merge(merger, None, windows, model=run_chip)
    # Measured: 0.08% (gaussian) and 1.1% (cosine) of the output range.
    error = np.abs(out - whole).max() / np.abs(whole).max()
    assert 0 < error < {"gaussian": 0.002, "cosine": 0.02}[blend]
    # Away from chip borders nothing changes.
    assert np.abs(out - whole)[:, :14, :14].max() == 0


def test_crop_without_enough_overlap_shows_the_seam(conv_case):
    """The exact tests above are not vacuous: too little overlap gives a different result."""
    image, whole, run_chip = conv_case
    shape = image.shape[1:]
    windows = chip_windows(shape, (32, 32), (2, 2))
    out = merge(BlendMerger(shape, 3, 32, blend="crop", overlap=2), None, windows, model=run_chip)
    assert not np.array_equal(out, whole)


def test_buffers_do_not_grow_with_scene_height():
    mergers = {h: BlendMerger((h, 300), 4, 64, blend="cosine", overlap=16) for h in (256, 4096)}
    assert mergers[256].nbytes == mergers[4096].nbytes
    assert mergers[4096]._acc.shape == (4, 64, 300)  # a strip of one chip height
    rng = np.random.default_rng(0)
    for height, merger in mergers.items():
        for window in chip_windows((height, 300), (64, 64), (16, 16)):
            merger.add(rng.random((4, 64, 64), dtype=np.float32), window)
        merger.finalize()
    # After a whole scene (the weight cache filled with the few chip layouts) still equal.
    assert mergers[256].nbytes == mergers[4096].nbytes < 2 * 64 * 300 * (5 * 8 + 1)


def test_skipped_chip_leaves_nan_and_zero_weight_pixels_fall_back():
    scene = np.arange(2 * 40 * 40, dtype=np.float32).reshape(2, 40, 40)
    windows = chip_windows((40, 40), (16, 16), (8, 8))
    skipped = windows.pop(0)  # top-left chip, e.g. mostly nodata
    out = merge(BlendMerger((40, 40), 2, 16, blend="crop", overlap=8), scene, windows)
    # Pixels only the skipped chip covered are NaN ...
    assert np.isnan(out[:, :8, :8]).all()
    # ... pixels its neighbours cover in their dropped margin still get their (exact) value.
    covered = ~np.isnan(out)
    np.testing.assert_array_equal(out[covered], scene[covered])
    assert covered[:, : skipped.height, : skipped.width].sum() == 2 * (16 * 16 - 8 * 8)


def test_scene_border_is_not_tapered():
    """One chip at a time: border pixels keep full weight, interior sides taper."""
    layout = AxisLayout(
        size=16, chip_size=16, overlap=8, margin=0, lead_neighbour=False, trail_neighbour=True
    )
    for name, window in BLEND_WINDOWS.items():
        profile = window(layout)
        assert profile[0] == 1.0, name
        assert profile[-1] < 0.05, name
    crop = BLEND_WINDOWS["crop"](layout)
    np.testing.assert_array_equal(crop, [1] * 12 + [0] * 4)


def test_cosine_weights_of_neighbours_sum_to_one():
    layout = AxisLayout(32, 32, overlap=12, margin=2, lead_neighbour=True, trail_neighbour=True)
    profile = BLEND_WINDOWS["cosine"](layout)
    stride = 32 - 12
    total = profile[stride:] + profile[:-stride]
    np.testing.assert_allclose(total[2:-2], 1.0, atol=1e-12)
    assert (profile[:2] == 0).all() and (profile[-2:] == 0).all()


def test_callable_blend_and_margin_applied_to_it():
    scene = np.random.default_rng(1).random((1, 30, 30), dtype=np.float32)
    windows = chip_windows((30, 30), (12, 12), (4, 4))
    window = functools.partial(gaussian_window, sigma_scale=0.3)
    merger = BlendMerger((30, 30), 1, 12, blend=window, overlap=4, margin=1)
    np.testing.assert_array_equal(merge(merger, scene, windows), scene)
    weights, _, _ = merger._chip_weights(8, 8, 12, 12)
    assert (weights[0] == 0).all() and (weights[:, -1] == 0).all()


def test_bad_blend_window_output_is_rejected():
    merger = BlendMerger((8, 8), 1, 4, blend=lambda axis: -np.ones(axis.size))
    with pytest.raises(ConfigError, match="finite weights >= 0"):
        merger.add(np.zeros((1, 4, 4), np.float32), Window(0, 0, 4, 4))


def test_unknown_blend_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'gaussian'"):
        BlendMerger((8, 8), 1, 4, blend="gausian")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": 4}, "smaller than the chip size"),
        ({"overlap": 2, "margin": 2}, "at most half the overlap"),
        ({"overlap": -1}, "int >= 0"),
    ],
)
def test_bad_sizes_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BlendMerger((8, 8), 1, 4, **kwargs)


def test_bad_chips_are_value_errors():
    merger = BlendMerger((16, 16), 2, 8, overlap=2)
    chip = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="outside"):
        merger.add(chip, Window(10, 0, 8, 8))
    with pytest.raises(ValueError, match="larger than chip_size"):
        merger.add(np.zeros((2, 9, 9), np.float32), Window(0, 0, 9, 9))
    with pytest.raises(ValueError, match="shape"):
        merger.add(np.zeros((3, 8, 8), np.float32), Window(0, 0, 8, 8))
    with pytest.raises(ValueError, match="integer"):
        merger.add(chip, Window(0.5, 0, 8, 8))
    with pytest.raises(ValueError, match="floating point"):
        merger.add(np.zeros((2, 8, 8), np.uint8), Window(0, 0, 8, 8))
    merger.add(chip, Window(0, 6, 8, 8))
    with pytest.raises(ValueError, match="row-major"):
        merger.add(chip, Window(0, 0, 8, 8))
    merger.finalize()
    with pytest.raises(ValueError, match="after finalize"):
        merger.add(chip, Window(0, 8, 8, 8))
    with pytest.raises(ValueError, match="already called"):
        merger.finalize()


def test_nan_in_a_dropped_margin_does_not_leak():
    scene = np.ones((1, 20, 20), np.float32)
    windows = chip_windows((20, 20), (12, 12), (4, 4))
    merger = BlendMerger((20, 20), 1, 12, blend="crop", overlap=4, margin=2)

    def model(window):
        chip = np.ones((1, window.height, window.width), np.float32)
        chip[:, :2, :] = np.nan if window.row_off else 1.0  # NaN in the top margin
        return chip

    np.testing.assert_array_equal(merge(merger, scene, windows, model=model), scene)


def test_to_uint8_probabilities():
    probs = np.array([0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 1.2, -0.1, np.nan], np.float32)
    np.testing.assert_array_equal(to_uint8_probabilities(probs), [0, 0, 2, 128, 255, 255, 0, 0])
    assert to_uint8_probabilities(probs).dtype == np.uint8
