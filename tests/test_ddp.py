"""Multi-process training: Lightning DDP with two CPU processes (gloo) through ``geounet train``.

The run is started the way a user starts it: ``geounet train --config job.yaml`` with
``strategy: ddp, devices: 2``; Lightning's launcher re-runs the same command for rank 1. Only
rank 0 writes the model file, and the logged validation metrics, reduced across both
processes, equal a single-process evaluation of the same weights on the whole val split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from _chips import make_chips  # noqa: E402  (tests/ is on pythonpath)

from geounet.config import TrainConfig
from geounet.data import ChipDataset
from geounet.errors import OutputError
from geounet.modelfile import load_model_file
from geounet.training import _prepare_out_dir, evaluate_chips, pixel_metrics

_LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "NODE_RANK")


class _Part(torch.utils.data.Dataset):
    """Some chips of a ChipDataset (what one DDP process validates)."""

    def __init__(self, dataset: ChipDataset, indices: list[int]) -> None:
        self.dataset, self.indices, self.info = dataset, indices, dataset.info

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]


def _clean_env() -> dict[str, str]:
    """This environment minus any launcher's rank variables (a CI job under SLURM or torchrun)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _LAUNCH_VARIABLES and not k.startswith(("SLURM_", "TORCHELASTIC_"))
    }
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("ddp")
    # 16 px chips: 22 train and 7 val chips, so the two val shares differ (4 + 3) and the
    # padding of Lightning's default sampler would count one chip twice.
    chips = make_chips(tmp, size=96, chip=16)
    out = tmp / "out"
    train = {
        "chips": str(chips), "out": str(out),
        "model": {"name": "unet", "options": {"depth": 2, "base_channels": 4}},
        "optimizer": {"lr": 0.02, "warmup_fraction": 0.0},
        "epochs": 2, "batch_size": 2, "patience": None, "val_samples": 1, "threads": 1,
        "accelerator": "cpu", "devices": 2, "strategy": "ddp", "progress_bar": False,
    }  # fmt: skip
    job = tmp / "job.yaml"
    job.write_text(yaml.safe_dump({"train": train}))
    # The console script, not `python -m`: Lightning's launcher re-runs sys.argv for rank 1.
    geounet = Path(sys.executable).with_name("geounet")
    proc = subprocess.run(
        [str(geounet), "-v", "train", "--config", str(job)],
        env=_clean_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"chips": chips, "out": out, "stdout": proc.stdout, "stderr": proc.stderr}


@pytest.mark.slow
def test_two_processes_train_and_only_rank_0_writes_the_model_file(ddp_run):
    out = ddp_run["out"]
    assert "MEMBER: 2/2" in ddp_run["stderr"]  # rank 1 joined the process group
    assert ddp_run["stdout"].count("trained 2 epochs") == 1  # rank 1 returns without a report
    assert sorted(out.rglob("*.safetensors")) == [out / "model.safetensors"]
    loaded = load_model_file(out / "model.safetensors")
    assert loaded.metadata.training["config"]["options"]["strategy"] == "ddp"
    with torch.no_grad():
        logits = loaded.model.eval()(torch.randn(1, 4, 16, 16))
    assert logits.shape == (1, 4, 16, 16) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_logged_val_metrics_cover_every_val_chip_once(ddp_run):
    out, chips = ddp_run["out"], ddp_run["chips"]
    summary = json.loads((out / "metrics.json").read_text())
    frame = pd.read_csv(out / "logs" / "metrics.csv")
    row = frame[frame["val_miou"].notna()].iloc[summary["best_epoch"]]
    model = load_model_file(out / "model.safetensors").model.eval()
    val = ChipDataset(chips, "val")
    names = load_model_file(out / "model.safetensors").metadata.classes.names
    single = pixel_metrics(evaluate_chips(model, val, batch_size=3).confusion, names)
    keys = ["miou", "mf1", "macc", "oa"] + [
        f"iou_{n}" for n in names if np.isfinite(single[f"iou_{n}"])
    ]
    for key in keys:
        assert row[f"val_{key}"] == pytest.approx(single[key], abs=1e-6), key
        assert summary["val_metrics"][key] == pytest.approx(single[key], abs=1e-9), key
    # The check can fail: rank 0's share alone, or Lightning's padded shares, give other values.
    others = [list(range(0, len(val), 2)), [*range(len(val)), 0]]
    for indices in others:
        part = evaluate_chips(model, _Part(val, indices), batch_size=3).confusion
        metrics = pixel_metrics(part, names)
        assert max(abs(metrics[k] - single[k]) for k in ("miou", "oa")) > 1e-4


@pytest.mark.parametrize("variable", ["LOCAL_RANK", "RANK", "SLURM_PROCID", "NODE_RANK"])
def test_only_rank_0_checks_and_clears_the_output_folder(tmp_path, monkeypatch, variable):
    for name in _LAUNCH_VARIABLES + ("SLURM_PROCID",):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(OutputError, match="already holds a training run"):
        _prepare_out_dir(tmp_path, resume=False, overwrite=False)
    monkeypatch.setenv(variable, "1")  # a later rank: rank 0 owns the folder
    assert _prepare_out_dir(tmp_path, resume=False, overwrite=True) is None
    assert (tmp_path / "metrics.json").is_file()


def test_num_nodes_goes_from_the_config_to_the_trainer_options(tmp_path):
    cfg = TrainConfig(chips=tmp_path, out=tmp_path, strategy="ddp", devices=4, num_nodes=2)
    options = cfg.fit_kwargs()["options"]
    assert (options.num_nodes, options.devices, options.strategy) == (2, 4, "ddp")
    assert options.to_dict()["num_nodes"] == 2
