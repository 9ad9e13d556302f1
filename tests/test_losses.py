"""Tests of the losses: hand-computed values, minima, ignored pixels, the factory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geounet.errors import ConfigError
from geounet.losses import (
    CombinedLoss,
    DiceLoss,
    FocalLoss,
    LossMode,
    binary_cross_entropy_loss,
    create_loss,
    cross_entropy_loss,
    dice_loss,
    focal_loss,
    iou_loss,
    list_losses,
    tversky_loss,
)

IGNORE = 255
NAMES = ["bce", "ce", "dice", "focal", "iou", "tversky"]

# --- tiny 2x2 cases written out by hand ----------------------------------------------------
# Binary: probabilities [[1/2, 3/4], [1/4, 1/2]] (logits 0, ln 3, -ln 3, 0),
# target [[1, 1], [0, 0]].
LN3 = math.log(3)
BIN_LOGITS = torch.tensor([[[[0.0, LN3], [-LN3, 0.0]]]])
BIN_TARGET = torch.tensor([[[1, 1], [0, 0]]])
# Per pixel, p_t (probability of the true class) is 1/2, 3/4, 3/4, 1/2.
BIN_PT = [0.5, 0.75, 0.75, 0.5]
# Foreground soft counts: tp = 1/2 + 3/4, sum(p) = 2, sum(t) = 2.
BIN_TP, BIN_FP, BIN_FN = 1.25, 0.75, 0.75

# Multiclass (3 classes): logits = log(p), so the softmax gives back p exactly.
MC_PROBA = [
    [[0.5, 0.25, 0.25], [0.2, 0.6, 0.2]],  # row 0: pixel (0, 0), pixel (0, 1)
    [[0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],  # row 1
]
MC_LOGITS = torch.tensor(MC_PROBA).log().permute(2, 0, 1).unsqueeze(0)  # 1 x 3 x 2 x 2
MC_TARGET = torch.tensor([[[0, 1], [2, IGNORE]]])  # the last pixel is unlabelled
# Valid pixels: p_t = 0.5, 0.6, 0.8.
MC_PT = [0.5, 0.6, 0.8]
# Per class over the 3 valid pixels: tp, sum(p), sum(t).
MC_TP = [0.5, 0.6, 0.8]
MC_PSUM = [0.5 + 0.2 + 0.1, 0.25 + 0.6 + 0.1, 0.25 + 0.2 + 0.8]
MC_TSUM = [1, 1, 1]


def close(value, expected):
    expected = float(expected)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_binary_cross_entropy_by_hand():
    expected = sum(-math.log(pt) for pt in BIN_PT) / 4
    close(cross_entropy_loss(BIN_LOGITS, BIN_TARGET, mode="binary"), expected)
    close(binary_cross_entropy_loss(BIN_LOGITS, BIN_TARGET, mode="binary"), expected)
    # Weights [1, 3] for classes 0 and 1: the two positives count three times.
    weights = [3, 3, 1, 1]
    weighted = sum(-w * math.log(pt) for w, pt in zip(weights, BIN_PT, strict=True)) / 8
    close(cross_entropy_loss(BIN_LOGITS, BIN_TARGET, mode="binary", class_weights=[1, 3]), weighted)


def test_binary_overlap_losses_by_hand():
    close(dice_loss(BIN_LOGITS, BIN_TARGET, mode="binary", smooth=0), 1 - 2.5 / 4)
    close(dice_loss(BIN_LOGITS, BIN_TARGET, mode="binary", smooth=1), 1 - 3.5 / 5)
    close(iou_loss(BIN_LOGITS, BIN_TARGET, mode="binary", smooth=0), 1 - 1.25 / 2.75)
    expected = 1 - BIN_TP / (BIN_TP + 0.3 * BIN_FP + 0.7 * BIN_FN)
    close(tversky_loss(BIN_LOGITS, BIN_TARGET, mode="binary", smooth=0), expected)
    # Weighted binary Dice scores both classes; the background also has tp = 1.25 here.
    background = 2 * 1.25 / (2 * 1.25 + BIN_FN + BIN_FP)
    foreground = 2 * 1.25 / 4
    expected = 1 - (1 * background + 3 * foreground) / 4
    close(
        dice_loss(BIN_LOGITS, BIN_TARGET, mode="binary", smooth=0, class_weights=[1, 3]), expected
    )


def test_binary_focal_by_hand():
    expected = sum(-((1 - pt) ** 2) * math.log(pt) for pt in BIN_PT) / 4
    close(focal_loss(BIN_LOGITS, BIN_TARGET, mode="binary", gamma=2), expected)
    alphas = [0.25, 0.25, 0.75, 0.75]  # the paper's alpha = 0.25 for positives
    expected = (
        sum(-a * (1 - pt) ** 2 * math.log(pt) for a, pt in zip(alphas, BIN_PT, strict=True)) / 4
    )
    close(focal_loss(BIN_LOGITS, BIN_TARGET, mode="binary", class_weights=[0.75, 0.25]), expected)


def test_multiclass_cross_entropy_by_hand():
    close(
        cross_entropy_loss(MC_LOGITS, MC_TARGET, mode="multiclass"),
        -sum(math.log(pt) for pt in MC_PT) / 3,
    )
    weights = [1, 2, 3]
    expected = -sum(w * math.log(pt) for w, pt in zip(weights, MC_PT, strict=True)) / 6
    close(
        cross_entropy_loss(MC_LOGITS, MC_TARGET, mode="multiclass", class_weights=weights),
        expected,
    )


def test_multiclass_one_vs_rest_bce_by_hand():
    valid = [(0, 0, 0), (0, 1, 1), (1, 0, 2)]
    total = 0.0
    for row, col, label in valid:
        for k, p in enumerate(MC_PROBA[row][col]):
            # The logit of class k is log(p_k); BCE with a sigmoid on that logit.
            q = 1 / (1 + math.exp(-math.log(p)))
            total += -math.log(q) if k == label else -math.log(1 - q)
    close(binary_cross_entropy_loss(MC_LOGITS, MC_TARGET, mode="multiclass"), total / 9)


def test_multiclass_overlap_losses_by_hand():
    dice = [2 * tp / (p + t) for tp, p, t in zip(MC_TP, MC_PSUM, MC_TSUM, strict=True)]
    close(dice_loss(MC_LOGITS, MC_TARGET, mode="multiclass", smooth=0), 1 - sum(dice) / 3)
    weighted = (1 * dice[0] + 2 * dice[1] + 3 * dice[2]) / 6
    close(
        dice_loss(MC_LOGITS, MC_TARGET, mode="multiclass", smooth=0, class_weights=[1, 2, 3]),
        1 - weighted,
    )
    iou = [tp / (p + t - tp) for tp, p, t in zip(MC_TP, MC_PSUM, MC_TSUM, strict=True)]
    close(iou_loss(MC_LOGITS, MC_TARGET, mode="multiclass", smooth=0), 1 - sum(iou) / 3)
    tversky = [
        tp / (tp + 0.2 * (p - tp) + 0.8 * (t - tp))
        for tp, p, t in zip(MC_TP, MC_PSUM, MC_TSUM, strict=True)
    ]
    close(
        tversky_loss(MC_LOGITS, MC_TARGET, mode="multiclass", alpha=0.2, beta=0.8, smooth=0),
        1 - sum(tversky) / 3,
    )
    smoothed = [
        (2 * tp + 1) / (p + t + 1) for tp, p, t in zip(MC_TP, MC_PSUM, MC_TSUM, strict=True)
    ]
    close(dice_loss(MC_LOGITS, MC_TARGET, mode="multiclass"), 1 - sum(smoothed) / 3)


def test_multiclass_focal_by_hand():
    expected = sum(-((1 - pt) ** 3) * math.log(pt) for pt in MC_PT) / 3
    close(focal_loss(MC_LOGITS, MC_TARGET, mode="multiclass", gamma=3), expected)


# --- relations between losses ----------------------------------------------------------------


def random_case(mode: str, shape=(2, 6, 7), classes: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    channels = 1 if mode == "binary" else classes
    logits = torch.randn(shape[0], channels, *shape[1:], generator=generator)
    high = 2 if mode == "binary" else classes
    target = torch.randint(0, high, shape, generator=generator)
    ignored = torch.rand(shape, generator=generator) < 0.3
    return logits, target.masked_fill(ignored, IGNORE), ignored


def test_cross_entropy_matches_torch():
    logits, target, _ = random_case("multiclass")
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    expected = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE)
    close(cross_entropy_loss(logits, target, mode="multiclass", class_weights=weights), expected)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_tversky_generalises_dice_and_iou(mode):
    logits, target, _ = random_case(mode)
    half = tversky_loss(logits, target, mode=mode, alpha=0.5, beta=0.5, smooth=0.5)
    close(half, dice_loss(logits, target, mode=mode, smooth=1.0))
    one = tversky_loss(logits, target, mode=mode, alpha=1, beta=1, smooth=0.5)
    close(one, iou_loss(logits, target, mode=mode, smooth=0.5))


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_focal_with_gamma_zero_is_cross_entropy(mode):
    logits, target, _ = random_case(mode)
    close(
        focal_loss(logits, target, mode=mode, gamma=0),
        cross_entropy_loss(logits, target, mode=mode),
    )


def test_five_dimensional_logits():
    logits = torch.randn(2, 3, 4, 5, 6)  # B x K x T x H x W
    target = torch.randint(0, 3, (2, 4, 5, 6))
    for name in NAMES:
        value = create_loss(name, num_classes=3)(logits, target)
        assert torch.isfinite(value)


# --- minimum, ignored pixels, empty batches ---------------------------------------------------


def perfect_logits(target: torch.Tensor, mode: str, classes: int = 4) -> torch.Tensor:
    clean = target.masked_fill(target == IGNORE, 0)
    if mode == "binary":
        return (clean.float() * 2 - 1).unsqueeze(1) * 30
    return (F.one_hot(clean, classes).permute(0, 3, 1, 2).float() * 2 - 1) * 30


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("name", NAMES)
def test_perfect_prediction_is_the_minimum(name, mode):
    loss = create_loss(name, num_classes=1 if mode == "binary" else 4)
    _, target, _ = random_case(mode)
    perfect = loss(perfect_logits(target, mode), target)
    assert float(perfect) == pytest.approx(0.0, abs=1e-5)
    for seed in range(3):
        logits, _, _ = random_case(mode, seed=seed + 10)
        assert float(loss(logits, target)) > float(perfect)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("name", [*NAMES, "ce+dice"])
def test_ignored_pixels_change_neither_value_nor_gradient(name, mode):
    num_classes = 1 if mode == "binary" else 4
    weights = None if name == "tversky" else ([1.0, 2.0] if mode == "binary" else [1, 2, 3, 4])
    loss = create_loss(name, num_classes=num_classes, class_weights=weights)
    logits, target, ignored = random_case(mode)
    changed = logits.clone()
    mask = ignored.unsqueeze(1).expand_as(changed)
    changed[mask] = torch.randn(int(mask.sum())) * 50
    grads, values = [], []
    for candidate in (logits, changed):
        candidate = candidate.clone().requires_grad_(True)
        value = loss(candidate, target)
        value.backward()
        values.append(value.detach())
        grads.append(candidate.grad)
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(grads[0], grads[1])
    assert (grads[0][mask] == 0).all()
    assert grads[0][~mask].abs().sum() > 0


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("name", [*NAMES, "ce+dice"])
def test_all_ignored_batch_is_zero_with_zero_gradient(name, mode):
    num_classes = 1 if mode == "binary" else 4
    loss = create_loss(name, num_classes=num_classes)
    logits, _, _ = random_case(mode)
    logits.requires_grad_(True)
    target = torch.full((2, 6, 7), IGNORE)
    value = loss(logits, target)
    value.backward()
    assert float(value.detach()) == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_ignore_index_none_counts_every_pixel():
    logits, target, _ = random_case("multiclass")
    target = target.masked_fill(target == IGNORE, 1)
    close(
        cross_entropy_loss(logits, target, mode="multiclass", ignore_index=None),
        F.cross_entropy(logits, target),
    )


# --- modules and the factory -----------------------------------------------------------------


def test_modules_match_the_functions():
    logits, target, _ = random_case("multiclass")
    close(
        DiceLoss(LossMode.MULTICLASS, smooth=0.5, class_weights=[1, 1, 2, 2])(logits, target),
        dice_loss(logits, target, mode="multiclass", smooth=0.5, class_weights=[1, 1, 2, 2]),
    )
    close(
        FocalLoss("multiclass", gamma=1)(logits, target),
        focal_loss(logits, target, mode="multiclass", gamma=1),
    )


def test_module_rejects_unknown_option_with_a_hint():
    with pytest.raises(ConfigError, match="Did you mean 'gamma'"):
        FocalLoss("binary", gama=2)


@pytest.mark.parametrize(
    "spec",
    [
        "ce+dice",
        "1*ce + 0.5*dice",
        {"ce": 1.0, "dice": 0.5},
        [{"name": "ce"}, {"name": "dice", "weight": 0.5, "smooth": 2.0}],
    ],
)
def test_create_combined_loss(spec):
    loss = create_loss(spec, num_classes=4)
    assert isinstance(loss, CombinedLoss)
    logits, target, _ = random_case("multiclass")
    dice_weight = 1.0 if spec == "ce+dice" else 0.5
    smooth = 2.0 if isinstance(spec, list) else 1.0
    expected = cross_entropy_loss(logits, target, mode="multiclass") + dice_weight * dice_loss(
        logits, target, mode="multiclass", smooth=smooth
    )
    close(loss(logits, target), expected)
    assert set(loss.forward_terms(logits, target)) == {"ce", "dice"}


def test_create_loss_passes_options_to_the_terms_that_take_them():
    loss = create_loss(
        "focal+tversky", num_classes=3, gamma=3.0, alpha=0.1, class_weights=[1, 2, 3]
    )
    assert loss.losses["focal"].options == {"gamma": 3.0}
    assert loss.losses["focal"].class_weights.tolist() == [1, 2, 3]
    assert loss.losses["tversky"].options == {"alpha": 0.1}


def test_create_loss_names_and_modes():
    assert set(list_losses()) == {"bce", "ce", "dice", "focal", "iou", "jaccard", "tversky"}
    assert create_loss("jaccard", num_classes=1).mode == LossMode.BINARY
    assert create_loss("iou", num_classes=2).mode == LossMode.MULTICLASS


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spec": "dcie"}, r"valid losses are .*Did you mean 'dice'"),
        ({"spec": "ce", "gamma": 2}, r"\['gamma'\] fit no loss"),
        ({"spec": "ce", "class_weights": [1, 2]}, "needs 4"),
        ({"spec": [{"name": "dice", "class_weights": [1]}]}, "needs 4"),
        ({"spec": "ce", "gama": 2}, "Did you mean 'gamma'"),
        ({"spec": "focal", "gamma": -1}, "non-negative"),
        ({"spec": [{"name": "dice", "gamma": 2}]}, "has no option"),
        ({"spec": "ce+ce"}, "twice"),
        ({"spec": "x*ce"}, "not a number"),
        ({"spec": 3}, "name, a dict or a list"),
    ],
)
def test_create_loss_errors(kwargs, match):
    spec = kwargs.pop("spec")
    with pytest.raises(ConfigError, match=match):
        create_loss(spec, num_classes=4, **kwargs)


def test_shape_and_mode_errors():
    with pytest.raises(ValueError, match="does not match"):
        dice_loss(
            torch.randn(1, 3, 4, 4), torch.zeros(1, 5, 5, dtype=torch.long), mode="multiclass"
        )
    with pytest.raises(ValueError, match="1 logit channel"):
        dice_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), mode="binary")
    with pytest.raises(ValueError, match="loss mode"):
        dice_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), mode="multi")
