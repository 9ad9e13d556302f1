"""A job killed while training resumes from train/checkpoints/last.ckpt, unless its settings changed."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import torch
from test_job import write_job

from geounet.config import load_job_config
from geounet.job import run_job

REPO = Path(__file__).resolve().parents[1]
GEOUNET = str(Path(sys.executable).with_name("geounet"))
EPOCHS = 5


def _complete(checkpoint: Path) -> bool:
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _kill_after_first_checkpoint(job: Path, out: Path) -> int:
    """Run the job in a real process, SIGKILL it once last.ckpt is written; the epochs done."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    last = out / "train" / "checkpoints" / "last.ckpt"
    with open(out.parent / "killed.log", "w") as log:
        proc = subprocess.Popen([GEOUNET, "run", str(job)], cwd=job.parent, env=env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 600
        while not _complete(last) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (out.parent / "killed.log").read_text()
    assert not (out / "train" / "stage.json").exists(), "training ended before the kill"
    return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) + 1


def test_a_killed_job_resumes_training_and_a_changed_setting_starts_afresh(tmp_path, caplog):
    path = write_job(tmp_path, train={"epochs": EPOCHS, "patience": None})
    out = tmp_path / "job"
    done = _kill_after_first_checkpoint(path, out)
    assert 1 <= done < EPOCHS
    shutil.copytree(out, tmp_path / "copy")  # the same interrupted run, for the second case

    with caplog.at_level(logging.INFO, logger="geounet"):
        result = run_job(load_job_config(path))
    stages = {s.name: s.status for s in result.stages}
    assert stages["tile"] == "skipped" and stages["train"] == "ran"
    assert "settings unchanged since the interrupted run; resuming from" in caplog.text
    assert f"resuming training from epoch {done} of {EPOCHS}" in caplog.text
    summary = json.loads((out / "train" / "metrics.json").read_text())
    assert summary["epochs"] == EPOCHS
    # The log holds every epoch once: those before the kill and those after the resume.
    epochs = pd.read_csv(out / "train" / "logs" / "metrics.csv")
    val = epochs.dropna(subset=["val_miou"])["epoch"].astype(int).tolist()
    assert val == list(range(EPOCHS))

    caplog.clear()
    changed = load_job_config(path, out=tmp_path / "copy", overrides={"train.epochs": 2})
    with caplog.at_level(logging.INFO, logger="geounet"):
        fresh = run_job(changed)
    assert "starting afresh (its settings or inputs changed)" in caplog.text
    assert "resuming training" not in caplog.text
    assert {s.name: s.status for s in fresh.stages}["train"] == "ran"
    val = pd.read_csv(tmp_path / "copy" / "train" / "logs" / "metrics.csv").dropna(
        subset=["val_miou"]
    )
    assert val["epoch"].astype(int).tolist() == [0, 1]
