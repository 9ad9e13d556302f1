"""Spatial cross-validation folds and the per-pixel random forest baseline."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from _chips import make_chips  # noqa: E402  (tests/ is on pythonpath)

from geounet.baseline import ForestOptions, labelled_pixels, predict_chips, train_forest
from geounet.errors import ConfigError, LabelError, OutputError
from geounet.folds import (
    FOLD_BUFFER,
    assign_folds,
    cross_validate,
    fold_splits,
    summarize_folds,
    write_fold_chips,
)
from geounet.tiling import read_index
from geounet.training import OptimizerOptions, TrainingOptions

TINY = TrainingOptions(
    model_options={"depth": 2, "base_channels": 4},
    optimizer=OptimizerOptions(lr=0.02, warmup_fraction=0.0),
    epochs=2,
    batch_size=4,
    progress_bar=False,
    val_samples=1,
    patience=None,
)
FOREST = ForestOptions(trees=5, max_pixels=2000, n_jobs=1)


def _grid_index(size: int, chip: int, stride: int, scenes: tuple[str, ...] = ("",)) -> pd.DataFrame:
    """A chip index of ``chip`` px chips every ``stride`` px over a ``size`` px square scene."""
    starts = sorted({*range(0, size - chip + 1, stride), size - chip})
    rows = [
        {"chip_id": f"{s}_{r}_{c}", "row_off": r, "col_off": c, "height": chip, "width": chip,
         "px_ignore": 0, **({"scene": s} if s else {})}
        for s in scenes for r in starts for c in starts
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _overlap(a: pd.Series, b: pd.Series) -> bool:
    return bool(
        a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height
        and a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
    )  # fmt: skip


@pytest.mark.parametrize(("stride", "folds"), [(32, 5), (24, 3), (16, 4)])
def test_folds_are_spatially_disjoint_and_cover_every_chip_once(stride: int, folds: int) -> None:
    index = _grid_index(256, 32, stride, scenes=("a", "b"))
    assignment = assign_folds(index, folds, block_px=2 * stride, seed=3)
    assert set(assignment) == set(index["chip_id"])  # every chip: one fold or buffer
    assert set(assignment.values()) <= set(range(folds + 1))
    assert {f for f in assignment.values() if f != FOLD_BUFFER} == set(range(1, folds + 1))
    by_id = index.set_index("chip_id", drop=False)
    rows = [by_id.loc[c] for c in assignment]
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            fa, fb = assignment[a.chip_id], assignment[b.chip_id]
            if FOLD_BUFFER in (fa, fb) or fa == fb or a.scene != b.scene:
                continue
            assert not _overlap(a, b), (a.chip_id, b.chip_id)
    if stride == 32:  # no chip overlaps another: nothing is buffered, each chip in one fold
        assert FOLD_BUFFER not in assignment.values()
    else:  # overlapping chips: some are buffered, and every fold keeps chips
        assert 0 < sum(f == FOLD_BUFFER for f in assignment.values()) < len(assignment)


def test_folds_follow_spatial_blocks_and_balance_labels() -> None:
    index = _grid_index(256, 32, 32)
    assignment = assign_folds(index, 4, block_px=64, seed=0)
    for r in range(0, 256, 64):
        for c in range(0, 256, 64):
            block = index[(index.row_off // 64 == r // 64) & (index.col_off // 64 == c // 64)]
            assert len({assignment[i] for i in block["chip_id"]}) == 1  # a block stays together
    sizes = np.bincount(list(assignment.values()))[1:]
    assert sizes.tolist() == [16, 16, 16, 16]  # 16 equal blocks -> 4 per fold
    assert assign_folds(index, 4, block_px=64, seed=0) == assignment  # seeded


def test_fold_splits_rotate_test_and_val() -> None:
    folds = {"a": 1, "b": 2, "c": 3, "d": FOLD_BUFFER}
    assert fold_splits(folds, 1, 3) == {"a": "test", "b": "val", "c": "train", "d": "buffer"}
    assert fold_splits(folds, 3, 3) == {"a": "val", "b": "train", "c": "test", "d": "buffer"}


def test_too_few_blocks_is_a_clear_error() -> None:
    index = _grid_index(64, 32, 32)
    with pytest.raises(ConfigError, match="4 spatial blocks cannot make 5 folds"):
        assign_folds(index, 5, block_px=32)
    with pytest.raises(ConfigError, match="folds must be >= 2"):
        assign_folds(index, 1, block_px=32)


def test_summary_is_mean_and_sample_std() -> None:
    def metrics(miou: float, water: float | None) -> dict[str, object]:
        return {"mean": {"iou": miou, "f1": miou}, "overall_accuracy": 0.9,
                "per_class": {"water": {"iou": water, "f1": water}}}  # fmt: skip

    per_fold = [{"unet": metrics(0.5, 0.2)}, {"unet": metrics(0.7, None)},
                {"unet": metrics(0.6, 0.4)}]  # fmt: skip
    summary = summarize_folds(per_fold, ["unet"])["unet"]
    assert summary["miou"]["mean"] == pytest.approx(0.6)
    assert summary["miou"]["std"] == pytest.approx(0.1)
    assert summary["iou_water"] == {
        "mean": pytest.approx(0.3),
        "std": pytest.approx(2**-0.5 * 0.2),
        "n": 2,
    }


def test_fold_chips_folder_points_at_the_original_chips(tmp_path: Path) -> None:
    chips = make_chips(tmp_path)
    index = read_index(chips)
    splits = {c: ("test" if i % 3 == 0 else "train") for i, c in enumerate(index["chip_id"])}
    fold = write_fold_chips(chips, splits, tmp_path / "fold")
    again = read_index(fold)
    assert dict(zip(again["chip_id"], again["split"], strict=True)) == splits
    assert again.crs == index.crs
    assert list(again.geometry.bounds.values.ravel()) == list(index.geometry.bounds.values.ravel())
    for rec in again.itertuples():
        with (
            rasterio.open(fold / rec.label) as a,
            rasterio.open(chips / Path(rec.label).relative_to(chips.resolve())) as b,
        ):
            assert np.array_equal(a.read(), b.read())
    x_fold, y_fold = labelled_pixels(fold, split="test")
    x_orig, y_orig = labelled_pixels(chips, chip_ids=[c for c, s in splits.items() if s == "test"])
    assert np.array_equal(x_fold, x_orig) and np.array_equal(y_fold, y_orig)


def test_forest_learns_the_train_pixels_and_skips_ignored_ones(tmp_path: Path) -> None:
    chips = make_chips(tmp_path)
    forest = train_forest(chips, options=FOREST)
    index = read_index(chips)
    train = index[index["split"] == "train"]
    labelled = int((train["height"] * train["width"] - train["px_ignore"]).sum())
    assert forest.available_pixels == labelled
    assert forest.train_pixels == min(labelled, FOREST.max_pixels)
    test_ids = list(index.loc[index["split"] == "test", "chip_id"])
    pred, ref = predict_chips(forest, chips, test_ids)
    assert len(pred) == len(ref) > 0 and 255 not in set(ref.tolist())
    assert (pred == ref).mean() > 0.9  # four distinct spectra: a forest separates them


def test_forest_without_labelled_pixels_is_a_clear_error(tmp_path: Path) -> None:
    chips = make_chips(tmp_path)
    with pytest.raises(LabelError, match="hold no labelled pixel"):
        train_forest(chips, chip_ids=[], options=FOREST)


def test_cross_validation_scores_unet_and_forest_on_the_same_pixels(tmp_path: Path) -> None:
    chips = make_chips(tmp_path)
    out = tmp_path / "cv"
    result = cross_validate(chips, out, folds=3, options=TINY, baseline=FOREST)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["folds"] == 3 and len(doc["per_fold"]) == 3
    index = read_index(chips)
    labelled = dict(
        zip(index["chip_id"], index["height"] * index["width"] - index["px_ignore"], strict=True)
    )
    tested = []
    for run in doc["per_fold"]:
        unet, rf = run["unet"], run["random_forest"]
        # One reference, the same pixels: identical per-class support and totals.
        assert unet["pixels_evaluated"] == rf["pixels_evaluated"] > 0
        assert np.array_equal(
            np.asarray(unet["confusion_matrix"]["matrix"]).sum(axis=1),
            np.asarray(rf["confusion_matrix"]["matrix"]).sum(axis=1),
        )
        test_ids = [c for c, f in result.folds.items() if f == run["fold"]]
        assert unet["pixels_evaluated"] == sum(labelled[c] for c in test_ids)
        assert run["chips"]["test"] == len(test_ids)
        tested += test_ids
        assert (out / f"fold_{run['fold']}" / "model.safetensors").is_file()
    assert sorted(tested) == sorted(index["chip_id"])  # each chip tested exactly once
    for model in ("unet", "random_forest"):
        miou = [run[model]["mean"]["iou"] for run in doc["per_fold"]]
        assert doc["summary"][model]["miou"]["mean"] == pytest.approx(np.mean(miou))
        assert doc["summary"][model]["miou"]["std"] == pytest.approx(np.std(miou, ddof=1))
    fold_map = gpd.read_file(out / "folds.gpkg", layer="folds")
    assert dict(zip(fold_map["chip_id"], fold_map["fold"], strict=True)) == result.folds
    with pytest.raises(OutputError, match="--overwrite"):
        cross_validate(chips, out, folds=3, options=TINY)


def test_cross_validation_scores_only(tmp_path: Path) -> None:
    chips = make_chips(tmp_path)
    with pytest.raises(ConfigError, match="folds >= 3"):
        cross_validate(chips, tmp_path / "cv", folds=2, options=TINY)
    one_epoch = replace(TINY, epochs=1)
    result = cross_validate(chips, tmp_path / "cv", folds=3, options=one_epoch, keep_models=False)
    assert not any((tmp_path / "cv").glob("fold_*"))
    assert set(result.summary) == {"unet"}
    assert result.summary["unet"]["miou"]["n"] == 3


def test_cross_validation_scores_a_recipe_model_with_its_recipe(tmp_path: Path) -> None:
    """A fold model trained on reflectance + an index channel is scored on the same input."""
    from geounet.data import ChipDataset
    from geounet.modelfile import load_model_file
    from geounet.radiometry import REFLECTANCE_SCALE
    from geounet.training import evaluate_chips

    chips = make_chips(tmp_path)
    recipe = replace(TINY, epochs=1, scale=REFLECTANCE_SCALE, indices=("ndvi",))
    result = cross_validate(chips, tmp_path / "cv", folds=3, options=recipe)
    run = result.per_fold[0]
    loaded = load_model_file(tmp_path / "cv" / f"fold_{run['fold']}" / "model.safetensors")
    assert loaded.metadata.input_recipe().in_channels == 5  # 4 bands + NDVI
    fold_chips = tmp_path / "cv" / f"fold_{run['fold']}" / "chips"
    test = ChipDataset(fold_chips, "test", recipe=loaded.metadata.input_recipe())
    expected = evaluate_chips(loaded.model, test, batch_size=4).confusion
    assert np.array_equal(np.asarray(run["unet"]["confusion_matrix"]["matrix"]), expected)
