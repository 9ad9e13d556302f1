from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from _chips import make_chips  # noqa: E402  (tests/ is on pythonpath)
from click.testing import CliRunner

from geounet.cli.train import train
from geounet.modelfile import read_model_metadata


@click.group()
def cli() -> None:
    """A local group: the real one registers `train` in geounet/cli/main.py."""


cli.add_command(train)


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chips(tmp_path_factory.mktemp("cli"))


def _config(tmp_path: Path, chips: Path, extra: str = "") -> Path:
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        "train:\n"
        f"  chips: {chips}\n"
        "  out: run\n"  # relative to the config file
        "  model: {name: unet, options: {depth: 2, base_channels: 4}}\n"
        "  optimizer: {lr: 0.01}\n"
        "  epochs: 5\n"
        "  batch_size: 4\n"
        "  patience: null\n"
        "  val_samples: 1\n" + extra
    )
    return cfg


def test_help_explains_every_option_with_its_default():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    flags = ["--config", "--chips", "--out", "--model", "--loss", "--lr", "--epochs",
             "--batch-size", "--precision", "--devices", "--strategy", "--seed",
             "--resume"]  # fmt: skip
    for flag in flags:
        assert flag in result.output
    for default in ["[default: 50]", "[default: 8]", "[default: unet]", "[default: ce+dice]",
                    "[default: 32-true]", "[default: auto]", "[default: 0.001]"]:  # fmt: skip
        assert default in result.output


def test_importing_the_command_does_not_import_torch():
    code = (
        "import sys; import geounet.cli.train; "
        "heavy = [m for m in sys.modules "
        "         if m.split('.')[0] in ('torch', 'lightning', 'geopandas')]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_from_a_config_with_flag_overrides(tmp_path, chips):
    cfg = _config(tmp_path, chips)
    args = ["train", "--config", str(cfg), "--epochs", "2", "--lr", "0.02", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "trained 2 epochs" in result.output and "val mIoU" in result.output
    meta = read_model_metadata(tmp_path / "run" / "model.safetensors")
    options = meta.training["config"]["options"]
    assert options["epochs"] == 2 and options["optimizer"]["lr"] == 0.02  # flags won
    assert options["batch_size"] == 4  # the config's value
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "--resume" in again.output and "Traceback" not in again.output
    resumed = CliRunner().invoke(cli, [*args[:4], "3", *args[5:], "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "trained 3 epochs" in resumed.output


def test_typo_in_config_names_the_field(tmp_path, chips):
    cfg = _config(tmp_path, chips, extra="  optimizer: {lr: 0.01, sheduler: cosine}\n")
    cfg.write_text(cfg.read_text().replace("  optimizer: {lr: 0.01}\n", ""))
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "optimizer.sheduler" in result.output
    assert "Extra inputs are not permitted" in result.output
    cfg = _config(tmp_path, chips, extra="  epoch: 3\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg)])
    assert result.exit_code == 1 and "epoch" in result.output
    args = ["train", "--config", str(_config(tmp_path, chips)), "--lr", "-1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "optimizer.lr" in result.output


def test_unknown_model_option_is_a_clean_error(tmp_path, chips):
    cfg = _config(tmp_path, chips)
    cfg.write_text(cfg.read_text().replace("base_channels: 4", "base_chanels: 4"))
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "base_chanels" in result.output and "base_channels" in result.output


def test_folds_flag_cross_validates_after_training(tmp_path, chips):
    import json

    cfg = _config(tmp_path, chips)
    args = [
        "train",
        "--config",
        str(cfg),
        "--epochs",
        "1",
        "--folds",
        "3",
        "--scores-only",
        "--no-progress",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "3-fold spatial cross-validation, unet: test mIoU" in result.output
    assert "3-fold spatial cross-validation, random_forest: test mIoU" in result.output
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file()  # the model trained on the job's own split
    doc = json.loads((run / "folds" / "metrics.json").read_text())
    assert doc["folds"] == 3 and set(doc["summary"]) == {"unet", "random_forest"}
    assert not any((run / "folds").glob("fold_*"))
    # An earlier cross-validation is refused before any training, and --folds 2 by click.
    again = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--folds", "3"])
    assert again.exit_code != 0 and "folds is not empty; pass --overwrite" in again.output
    two = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--folds", "2"])
    assert two.exit_code == 2 and "--folds" in two.output
