"""A job is checked whole, from file headers, before its first stage: every problem at once."""

from __future__ import annotations

import time

import pytest
from affine import Affine
from click.testing import CliRunner
from test_job import write_job

from geounet._job_checks import check_job
from geounet.cli.main import cli
from geounet.config import load_job_config
from geounet.errors import JobCheckError
from geounet.job import run_job
from geounet.sample_data import make_synthetic_scene


def _problems(path, **kwargs):
    with pytest.raises(JobCheckError) as err:
        run_job(load_job_config(path, **kwargs))
    return err.value.problems, str(err.value)


def test_a_broken_job_fails_before_tiling_with_every_problem_listed(tmp_path):
    (tmp_path / "warm").mkdir()
    check_job(load_job_config(write_job(tmp_path / "warm")))  # imports paid outside the timing
    path = write_job(
        tmp_path,
        predict={"scene": "missing.tif", "overlap": 32},
        evaluate={"reference": "nope.gpkg", "object_classes": ["roof"]},
        vectorize={"classes": ["water", "forest"]},
        tile={"class_column": "kind"},
    )
    start = time.perf_counter()
    problems, message = _problems(path)
    assert time.perf_counter() - start < 2.0
    assert not (tmp_path / "job").exists()  # nothing tiled, not even the job folder
    keys = [p.split(":")[0] for p in problems]
    assert keys == [
        "tile.class_column", "predict.overlap", "predict.scene", "evaluate.reference",
        "vectorize.classes", "evaluate.object_classes",
    ]  # fmt: skip
    assert f"{tmp_path / 'missing.tif'} does not exist" in message
    assert f"{tmp_path / 'nope.gpkg'} does not exist" in message
    assert "overlap: 32 px must be smaller than the predict chip size 32" in message
    assert "no column 'kind'; its columns are ['fclass']" in message
    assert "unknown class 'forest'" in message and "unknown class 'roof'" in message
    assert message.startswith("job 'tiny': 6 problem(s) found before any stage ran")


def test_a_predict_scene_with_other_bands_or_pixel_size_is_named(tmp_path):
    make_synthetic_scene(tmp_path / "three.tif", shape=(64, 64), count=3)
    problems, _ = _problems(write_job(tmp_path, predict={"scene": "three.tif"}))
    assert len(problems) == 1 and problems[0].startswith("predict.scene: ")
    assert "4 bands ['B02', 'B03', 'B04', 'B08']" in problems[0] and "3 bands" in problems[0]
    coarse = make_synthetic_scene(
        tmp_path / "s60.tif", shape=(64, 64), count=4,
        transform=Affine(60, 0, 330000, 0, -60, 5822040),
    )  # fmt: skip
    path = write_job(tmp_path, predict={"scene": str(coarse)})
    problems, _ = _problems(path, overrides={"predict.scene": str(coarse)})
    assert "60 x 60 m" in problems[0] and "10 x 10 m" in problems[0]
    assert "predict.allow_resolution_mismatch" in problems[0]
    check_job(load_job_config(path, overrides={"predict.allow_resolution_mismatch": True}))


def test_chip_sizes_must_fit_the_scene_and_the_model(tmp_path):
    path = write_job(
        tmp_path,
        tile={"chip_size": 128},
        train={"augment": {"crop_size": 160}, "model": {"name": "unet",
               "options": {"depth": 2, "base_channels": 4, "padding": "valid"}}},
        predict={"chip_size": 33, "overlap": 4},
    )  # fmt: skip
    problems, message = _problems(path)
    # 128 and 160 suit a valid-padding U-Net of depth 2 (sizes 4k + 12 from 44), 33 does not.
    keys = [p.split(":")[0] for p in problems]
    assert keys == ["tile.chip_size", "train.augment.crop_size", "predict.chip_size"]
    assert "128 px is larger than the scene (96 x 96 px)" in message
    assert "Input size 33 does not fit a valid-padding U-Net of depth 2" in message
    (tmp_path / "b").mkdir()
    problems, _ = _problems(write_job(tmp_path / "b", train={"model": {"options": {"dpeth": 2}}}))
    assert problems[0].startswith("train.model: Unknown option(s) ['dpeth']")


def test_an_unwritable_job_folder_is_listed_with_the_rest(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    path = write_job(tmp_path, predict={"overlap": 40})
    problems, _ = _problems(path, out=tmp_path / "file" / "job")
    assert [p.split(":")[0] for p in problems] == ["predict.overlap", "out"]
    assert "is a file, not a folder" in problems[1]


def test_cli_run_lists_the_problems_without_a_traceback(tmp_path):
    path = write_job(tmp_path, predict={"scene": "missing.tif"}, evaluate={"reference": "no.tif"})
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 1
    assert "2 problem(s) found before any stage ran" in result.output
    assert "  - predict.scene:" in result.output and "  - evaluate.reference:" in result.output
    assert "Traceback" not in result.output


def test_a_gpu_asked_for_must_be_there(tmp_path):
    import torch

    path = write_job(tmp_path, predict={"device": "cuda"}, train={"accelerator": "gpu"})
    job = load_job_config(path)
    if torch.cuda.is_available():
        check_job(job)  # on a GPU machine both are fine
        return
    with pytest.raises(JobCheckError) as err:
        check_job(job)
    assert [p.split(":")[0] for p in err.value.problems] == ["predict.device", "train.accelerator"]
    assert "torch sees no GPU" in str(err.value)
