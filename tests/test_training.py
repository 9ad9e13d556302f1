from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _chips import make_chips  # noqa: E402  (tests/ is on pythonpath)

from geounet.errors import ConfigError, InputFileError, LabelError, OutputError
from geounet.modelfile import load_model_file
from geounet.training import (
    OptimizerOptions,
    TrainingOptions,
    confusion_matrix,
    fit,
    pixel_metrics,
)

TINY = TrainingOptions(
    model_options={"depth": 2, "base_channels": 4},
    optimizer=OptimizerOptions(lr=0.02, warmup_fraction=0.0),
    epochs=3,
    batch_size=2,
    progress_bar=False,
    val_samples=2,
    patience=None,
)


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chips(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def run(chips: Path, tmp_path_factory: pytest.TempPathFactory):
    return fit(chips, tmp_path_factory.mktemp("run") / "out", options=TINY)


def _epochs(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "logs" / "metrics.csv")
    return frame[frame["val_miou"].notna()]


def test_training_lowers_the_loss_and_writes_a_model_file(run):
    frame = pd.read_csv(run.out_dir / "logs" / "metrics.csv")
    train_loss = frame["train_loss_epoch"].dropna().to_numpy()
    assert len(train_loss) == 3 and train_loss[-1] < train_loss[0]
    assert run.epochs == 3 and run.model_path == run.out_dir / "model.safetensors"
    loaded = load_model_file(run.model_path)
    meta = loaded.metadata
    assert meta.bands == ("B02", "B03", "B04", "B08") and meta.chip_size == 32
    assert meta.res == (10.0, 10.0) and meta.crs_hint == "EPSG:32633"
    assert meta.classes.names == ["other", "field", "water", "building"]
    assert meta.architecture["options"]["base_channels"] == 4
    assert meta.training["best_epoch"] == run.best_epoch
    assert meta.training["config"]["options"]["epochs"] == 3
    assert meta.training["val_metrics"]["miou"] == pytest.approx(run.metrics["miou"])
    summary = json.loads((run.out_dir / "metrics.json").read_text())
    assert summary["val_metrics"]["oa"] == pytest.approx(run.metrics["oa"])
    for name in ("curves", "confusion_matrix", "val_samples"):
        assert run.plots[name].is_file() and run.plots[name].stat().st_size > 1000


def test_model_file_metrics_match_torchmetrics_of_the_best_epoch(run):
    # The model file's metrics (numpy confusion matrix) and the logged torchmetrics values of
    # the best epoch come from the same weights, so they agree.
    row = _epochs(run.out_dir).iloc[run.best_epoch]
    assert row["val_miou"] == pytest.approx(run.metrics["miou"], abs=1e-5)
    assert row["val_oa"] == pytest.approx(run.metrics["oa"], abs=1e-5)


def test_checkpoint_holds_hyperparameters_and_the_resolved_config(run):
    ckpt = torch.load(run.out_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["architecture"]["name"] == "unet"
    assert ckpt["geounet_config"]["options"]["batch_size"] == 2


def test_same_seed_gives_the_same_metrics(chips, run, tmp_path):
    again = fit(chips, tmp_path / "again", options=TINY)
    np.testing.assert_equal(again.metrics, run.metrics)  # NaN (absent class) == NaN
    a = _epochs(run.out_dir).drop(columns=["step"]).reset_index(drop=True)
    b = _epochs(again.out_dir).drop(columns=["step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    first, second = load_model_file(run.model_path).model, load_model_file(again.model_path).model
    for (k, v), w in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the run was copied
def test_resume_continues_from_the_saved_epoch(chips, run, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(run.out_dir, out)
    with pytest.raises(OutputError, match="--resume"):
        fit(chips, out, options=TINY)  # an existing run is not replaced by accident
    resumed = fit(chips, out, options=replace(TINY, epochs=5), resume=True)
    assert resumed.epochs == 5
    epochs = _epochs(out)["epoch"].tolist()
    assert epochs == [0, 1, 2, 3, 4]  # 3 and 4 added, 0..2 not trained again
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 4


def test_resume_without_a_checkpoint_and_bad_options_fail_before_training(chips, tmp_path):
    with pytest.raises(InputFileError, match="cannot resume"):
        fit(chips, tmp_path / "none", options=TINY, resume=True)
    bad = replace(TINY, model_options={"depht": 2})
    with pytest.raises(ConfigError, match="depht"):
        fit(chips, tmp_path / "bad", options=bad)
    with pytest.raises(ConfigError, match="loss"):
        fit(chips, tmp_path / "bad2", options=replace(TINY, loss="cee"))
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_a_chips_folder_without_val_labels_is_refused(chips, tmp_path):
    import geopandas as gpd

    copy = tmp_path / "chips"
    shutil.copytree(chips, copy)
    index = gpd.read_file(copy / "index.gpkg", layer="chips")
    index["split"] = "train"
    index.to_file(copy / "index.gpkg", layer="chips", driver="GPKG")
    with pytest.raises(LabelError, match="no val chip"):
        fit(copy, tmp_path / "out", options=TINY)


def test_confusion_metrics_follow_torchmetrics_macro_rules():
    target = np.array([[0, 0, 1, 255], [2, 2, 2, 1]])
    pred = np.array([[0, 1, 1, 3], [2, 2, 0, 1]])
    cm = confusion_matrix(pred, target, num_classes=4)
    assert cm.sum() == 7 and cm[0, 0] == 1 and cm[0, 1] == 1 and cm[2, 0] == 1
    m = pixel_metrics(cm, ["a", "b", "c", "d"])
    assert m["iou_a"] == pytest.approx(1 / 3) and m["iou_b"] == pytest.approx(2 / 3)
    assert m["iou_c"] == pytest.approx(2 / 3) and np.isnan(m["iou_d"])  # absent: not averaged
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)
    assert m["oa"] == pytest.approx(5 / 7)
    from torchmetrics.functional.classification import multiclass_jaccard_index

    tm = multiclass_jaccard_index(torch.tensor(pred), torch.tensor(target), 4, ignore_index=255)
    assert float(tm) == pytest.approx(m["miou"])


def test_ema_update_moves_the_average_towards_the_weights():
    from geounet.training import SegmentationTask

    arch = {"name": "unet", "in_channels": 2, "num_classes": 2, "options": {"depth": 2,
            "base_channels": 4}}  # fmt: skip
    task = SegmentationTask(arch, ["a", "b"], ema=0.5)
    assert task.inference_model is task.ema_model
    with torch.no_grad():
        for p in task.model.parameters():
            p.fill_(1.0)
        for p in task.ema_model.parameters():
            p.zero_()
    task.on_train_batch_end(None, None, 0)
    # Step 0: the warm-up decay (1 + 0) / (10 + 0) = 0.1 is below 0.5, so avg = 0.9 * 1.
    for p in task.ema_model.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.9))
        assert not p.requires_grad
    assert SegmentationTask(arch, ["a", "b"]).inference_model is not None
    with pytest.raises(ConfigError, match="ema"):
        SegmentationTask(arch, ["a", "b"], ema=1.0)


def test_ema_run_ships_and_validates_the_averaged_weights(chips, tmp_path):
    run = fit(chips, tmp_path / "ema", options=replace(TINY, ema=0.9))
    ckpt = torch.load(run.best_checkpoint, weights_only=True)["state_dict"]
    shipped = load_model_file(run.model_path).model.state_dict()
    averaged = {k.removeprefix("ema_model."): v for k, v in ckpt.items() if k.startswith("ema_")}
    raw = {k.removeprefix("model."): v for k, v in ckpt.items() if k.startswith("model.")}
    assert averaged.keys() == shipped.keys() == raw.keys()
    assert all(torch.equal(shipped[k], averaged[k]) for k in shipped)
    assert not all(torch.equal(shipped[k], raw[k]) for k in shipped)
    # metrics.json (numpy, shipped weights) equals the logged val_miou of the best epoch.
    row = _epochs(run.out_dir).iloc[run.best_epoch]
    assert row["val_miou"] == pytest.approx(run.metrics["miou"], abs=1e-5)
    with pytest.raises(ConfigError, match="ema"):
        TrainingOptions(ema=0.0)
