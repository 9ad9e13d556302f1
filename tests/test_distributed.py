"""Many scenes on dask.distributed: same bytes as one process, retries, failures, bad input."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import rasterio
import torch
from _models import BANDS, make_model_file
from affine import Affine
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import box

from geounet.classes import ClassMap, ClassScheme
from geounet.distributed import (
    ClusterOptions,
    predict_scenes,
    resolve_scenes,
    scene_stem,
    tile_scenes,
)
from geounet.errors import BandMismatchError, ConfigError, InputFileError, OutputError
from geounet.inference import ModelSpec, PredictOptions, predict_scene
from geounet.sample_data import class_map_path, make_synthetic_labels, make_synthetic_scene
from geounet.tiling import TilingOptions, read_index, tile_scene

PREDICT_FILES = ("classes.tif", "probabilities.tif", "classes.tif.aux.xml", "classes.qml")

# The tripwire model below is defined here, so the workers get it by value, not by import.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    """One local cluster of 2 worker processes shared by the tests that do not start their own."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _model_file(tmp_path):
    return make_model_file(tmp_path, chip_size=32)[0]


def _scene(path, shape, *, fill="random", crs="EPSG:32633"):
    make_synthetic_scene(path, shape=shape, count=4, fill=fill, crs=crs, dtype="uint16")
    with rasterio.open(path, "r+") as ds:
        ds.descriptions = BANDS
    return path


def _band_files(folder, stem, shape):
    """A scene as 4 single-band files ``<stem>_B02.tif`` ... (stacked when opened)."""
    folder.mkdir(exist_ok=True)
    whole = make_synthetic_scene(folder / "tmp.tif", shape=shape, count=4, fill="coords")
    paths = []
    with rasterio.open(whole) as src:
        profile = {**src.profile, "count": 1}
        for i, band in enumerate(BANDS, start=1):
            paths.append(folder / f"{stem}_{band}.tif")
            with rasterio.open(paths[-1], "w", **profile) as dst:
                dst.write(src.read(i), 1)
    whole.unlink()
    return tuple(paths)


def _assert_same_raster(a, b):
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.profile == y.profile  # driver, dtype, shape, CRS, transform, nodata, tiling
        assert x.crs == y.crs and x.transform == y.transform
        np.testing.assert_array_equal(x.read(), y.read())
        assert x.tags() == y.tags() and x.descriptions == y.descriptions
        assert x.overviews(1) == y.overviews(1)
        if x.count == 1 and x.dtypes[0] == "uint8":
            assert x.colormap(1) == y.colormap(1)


def _assert_same_prediction(got: Path, want: Path):
    # The files are even byte-identical here (GDAL writes no timestamp), but the contract is
    # the decoded data, CRS, transform, tags and sidecars.
    for name in PREDICT_FILES:
        if name.endswith(".tif"):
            _assert_same_raster(got / name, want / name)
        else:
            assert (got / name).read_bytes() == (want / name).read_bytes(), name
    assert [p.name for p in got.iterdir() if p.name.startswith(".")] == []


def test_two_local_workers_predict_three_scenes_like_one_process(tmp_path):
    model = _model_file(tmp_path)
    scenes = [
        _scene(tmp_path / "a.tif", (70, 90)),
        _band_files(tmp_path / "bands", "s2", (50, 61)),
        _scene(tmp_path / "c.tif", (40, 77), fill="coords", crs="EPSG:4326"),
    ]
    options = PredictOptions(overlap=8, probabilities=True, device="cpu")
    result = predict_scenes(
        model, scenes, tmp_path / "out", options=options, cluster=ClusterOptions(workers=2)
    )
    assert result.ok, result.failed
    assert [r.name for r in result.runs] == ["a", "s2", "c"]
    for run, scene in zip(result.runs, scenes, strict=True):
        single = predict_scene(model, scene if isinstance(scene, Path) else list(scene),
                               tmp_path / "single" / run.name, options=options)  # fmt: skip
        _assert_same_prediction(tmp_path / "out" / run.name, single.classes.parent)
        assert run.outputs["classes"] == str(tmp_path / "out" / run.name / "classes.tif")
    summary = json.loads(result.summary.read_text())
    assert summary["command"] == "predict" and summary["scenes_failed"] == 0
    assert summary["cluster"] == {"local_workers": 2, "retries": 1}
    assert [s["status"] for s in summary["scenes"]] == ["ok"] * 3
    assert all(s["seconds"] > 0 for s in summary["scenes"])


class TripwireModel(torch.nn.Module):
    """A 1x1 convolution that trips on the poison scene (its chips are constant).

    ``kill`` SIGKILLs its worker process and ``raise`` raises, the first time only (the
    marker file is removed); ``always`` raises and ``kill-always`` kills every time.
    """

    def __init__(self, marker: Path, action: str):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 4, 1)
        self.marker, self.action = str(marker), action

    def forward(self, x):
        if bool((x == x.flatten()[0]).all()):
            if self.action == "always":
                raise RuntimeError("the poison scene always fails")
            if self.action == "kill-always":
                os.kill(os.getpid(), signal.SIGKILL)
            if os.path.exists(self.marker):
                os.unlink(self.marker)
                if self.action == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("a transient failure")
        return self.conv(x)


def _spec():
    return ModelSpec(
        bands=BANDS, mean=np.full(4, 100.0, np.float32), std=np.full(4, 50.0, np.float32),
        scheme=ClassScheme.default(), chip_size=32,
    )  # fmt: skip


def _three_scenes(tmp_path):
    return [
        _scene(tmp_path / "one.tif", (60, 70)),
        _scene(tmp_path / "poison.tif", (64, 64), fill="constant"),
        _scene(tmp_path / "three.tif", (45, 80)),
    ]


@pytest.mark.parametrize("action", ["kill", "raise"])
def test_a_killed_or_failed_attempt_is_retried(tmp_path, client, action):
    marker = tmp_path / "trip"
    marker.touch()
    model, scenes = TripwireModel(marker, action), _three_scenes(tmp_path)
    workers_before = set(client.scheduler_info()["workers"])
    options = PredictOptions(overlap=8, probabilities=True, device="cpu")
    result = predict_scenes(
        model, scenes, tmp_path / "out", metadata=_spec(), options=options,
        cluster=ClusterOptions(scheduler=client, retries=1),
    )  # fmt: skip
    assert not marker.exists()  # the first attempt at the poison scene did trip
    if action == "kill":  # its worker died (the nanny restarts it under a new address)
        assert workers_before - set(client.scheduler_info()["workers"])
    assert result.ok, result.failed
    for run, scene in zip(result.runs, scenes, strict=True):
        single = predict_scene(model, scene, tmp_path / "single" / run.name, metadata=_spec(),
                               options=options)  # fmt: skip
        _assert_same_prediction(run.out_dir, single.classes.parent)


@pytest.mark.parametrize(
    ("action", "error"),
    [
        ("always", "RuntimeError: the poison scene always fails"),
        ("kill-always", "KilledWorker: Attempted to run task 'geounet-predict-poison-"),
    ],
)
def test_a_failing_scene_is_reported_and_the_others_are_kept(tmp_path, client, action, error):
    scenes = _three_scenes(tmp_path)
    scheduler = client.cluster.scheduler
    allowed, scheduler.allowed_failures = scheduler.allowed_failures, 0  # one crash is final
    try:
        result = predict_scenes(
            TripwireModel(tmp_path / "unused", action), scenes, tmp_path / "out",
            metadata=_spec(), options=PredictOptions(device="cpu"),
            cluster=ClusterOptions(scheduler=client, retries=1),
        )  # fmt: skip
    finally:
        scheduler.allowed_failures = allowed
    failed = {r.name: r for r in result.failed}
    assert not result.ok and "poison" in failed
    assert failed["poison"].error.startswith(error)
    assert failed["poison"].seconds is None and failed["poison"].traceback
    if action == "always":
        assert list(failed) == ["poison"]
    else:  # a scene waiting on the dead worker counts that death too (allowed-failures 0 here)
        assert all(r.error.startswith("KilledWorker") for r in failed.values())
    for run in result.runs:
        if run.name not in failed:
            with rasterio.open(run.out_dir / "classes.tif") as ds:
                assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                assert (ds.read(1) < 4).all()
    assert not (tmp_path / "out" / "poison" / "classes.tif").exists()
    assert list((tmp_path / "out" / "poison").glob(".*")) == []  # no working folder left
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["scenes_failed"] == len(failed) and summary["scenes_ok"] == 3 - len(failed)
    assert summary["scenes"][1]["status"] == "failed"
    assert summary["scenes"][1]["error"] == failed["poison"].error


def test_tile_two_scenes_like_one_process(tmp_path, client):
    scenes = [_scene(tmp_path / "north.tif", (64, 96)), _band_files(tmp_path, "south", (70, 64))]
    x0, y0 = 330000.0, 5822040.0
    polygons = [(box(x0, y0 - 400, x0 + 500, y0), "farm"), (box(x0, y0 - 700, x0 + 300, y0 - 400), "water")]  # fmt: skip
    labels = make_synthetic_labels(tmp_path / "labels.gpkg", polygons, crs="EPSG:32633")
    kwargs = {
        "labels": labels,
        "class_map": ClassMap.from_yaml(class_map_path()),
        "options": TilingOptions(chip_size=32, stride=24, split_block_chips=1, workers=1),
    }
    result = tile_scenes(
        scenes, tmp_path / "out", cluster=ClusterOptions(scheduler=client), **kwargs
    )
    assert result.ok, result.failed
    for run, scene in zip(result.runs, scenes, strict=True):
        single = tile_scene(scene, tmp_path / "single" / run.name, **kwargs).out_dir
        got = sorted(p.relative_to(run.out_dir) for p in run.out_dir.rglob("*"))
        assert got == sorted(p.relative_to(single) for p in single.rglob("*"))
        for rel in got:
            if rel.suffix == ".tif":
                _assert_same_raster(run.out_dir / rel, single / rel)
            elif rel.suffix == ".json":
                assert (run.out_dir / rel).read_text() == (single / rel).read_text(), rel
        assert_geodataframe_equal(read_index(run.out_dir), read_index(single))
        assert read_index(run.out_dir).px_field.sum() > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["north", "run.json", "south"]


def test_bad_input_is_found_before_any_task(tmp_path):
    model = _model_file(tmp_path)
    good = _scene(tmp_path / "good.tif", (40, 40))
    # An unreachable scheduler: reaching it would be a ConfigError, not these errors.
    nowhere = ClusterOptions(scheduler="tcp://127.0.0.1:9")
    with pytest.raises(InputFileError, match="missing.tif does not exist"):
        predict_scenes(model, [good, tmp_path / "missing.tif"], tmp_path / "o", cluster=nowhere)
    swapped = make_synthetic_scene(tmp_path / "swapped.tif", shape=(40, 40), count=4)
    with rasterio.open(swapped, "r+") as ds:  # B8A for B08: bands merely swapped would be
        ds.descriptions = ("B02", "B03", "B8A", "B04")  # read in the model's order
    three = make_synthetic_scene(tmp_path / "three.tif", shape=(40, 40), count=3)
    with pytest.raises(BandMismatchError, match=r"2 of 3 scenes(.|\n)*swapped.tif(.|\n)*three.tif"):
        predict_scenes(model, [good, swapped, three], tmp_path / "o", cluster=nowhere)
    other = tmp_path / "other"
    other.mkdir()
    twin = _scene(other / "good.tif", (40, 40))
    with pytest.raises(ConfigError, match="both write into"):
        predict_scenes(model, [good, twin], tmp_path / "o", cluster=nowhere)
    assert not (tmp_path / "o").exists()
    (tmp_path / "chips" / "good").mkdir(parents=True)
    (tmp_path / "chips" / "good" / "x").touch()
    with pytest.raises(OutputError, match="not empty"):
        tile_scenes(
            [good], tmp_path / "chips", options=TilingOptions(chip_size=16), cluster=nowhere
        )
    import dask

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(ConfigError, match="cannot reach a dask scheduler"),
    ):
        predict_scenes(model, [good], tmp_path / "o", cluster=nowhere)


def test_resolve_scenes_lists_globs_and_names(tmp_path):
    (tmp_path / "s").mkdir()
    for name in ("b.tif", "a.tif", "c.vrt"):
        (tmp_path / "s" / name).touch()
    listing = tmp_path / "scenes.txt"
    listing.write_text(
        "# one scene per line\n\ns/a.tif\n"
        "bands/T33_B02.jp2 bands/T33_B03.jp2  # two band files\n"
        "'/data/with space.tif'\n"
    )
    assert resolve_scenes([listing, str(tmp_path / "s" / "*.tif"), "x.vrt"]) == [
        (str(tmp_path / "s" / "a.tif"),),
        (str(tmp_path / "bands" / "T33_B02.jp2"), str(tmp_path / "bands" / "T33_B03.jp2")),
        ("/data/with space.tif",),
        (str(tmp_path / "s" / "a.tif"),),
        (str(tmp_path / "s" / "b.tif"),),
        ("x.vrt",),
    ]
    assert scene_stem("/d/T33_B02.tif") == "T33_B02"
    assert scene_stem(["/d/T33_B02.jp2", "/d/T33_B03.jp2"]) == "T33"
    with pytest.raises(InputFileError, match="matches no file"):
        resolve_scenes([str(tmp_path / "*.nope")])
    with pytest.raises(InputFileError, match="cannot read the scene list"):
        resolve_scenes([tmp_path / "absent.txt"])
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputFileError, match="names no scene"):
        resolve_scenes([tmp_path / "empty.txt"])


def test_scenes_tiled_from_one_class_raster_share_its_classes(tmp_path, client):
    # Two scenes side by side over a class raster whose codes differ between them (west: 1, 2;
    # east: 2, 3): taken per scene the ids would differ; one scheme serves both.
    west = make_synthetic_scene(tmp_path / "west.tif", shape=(32, 32), count=3, fill="random")
    east = make_synthetic_scene(
        tmp_path / "east.tif", shape=(32, 32), count=3, fill="random",
        transform=Affine(10.0, 0, 330320.0, 0, -10.0, 5822040.0),
    )  # fmt: skip
    codes = np.ones((32, 64), np.uint8)
    codes[16:, :32], codes[:, 32:], codes[16:, 32:] = 2, 2, 3
    labels = tmp_path / "codes.tif"
    grid = Affine(10.0, 0, 330000.0, 0, -10.0, 5822040.0)
    profile = dict(driver="GTiff", width=64, height=32, count=1, dtype="uint8", nodata=0,
                   crs="EPSG:32633", transform=grid)  # fmt: skip
    with rasterio.open(labels, "w", **profile) as dst:
        dst.write(codes, 1)
    options = TilingOptions(chip_size=32, split_fractions=(1.0, 0.0, 0.0), workers=1)
    result = tile_scenes([west, east], tmp_path / "out", cluster=ClusterOptions(scheduler=client),
                         labels=labels, options=options)  # fmt: skip
    assert result.ok, result.failed
    for run in result.runs:
        scheme = json.loads((run.out_dir / "classes.json").read_text())
        assert [c["name"] for c in scheme["classes"]] == ["code_1", "code_2", "code_3"]
    east_px = read_index(tmp_path / "out" / "east")
    assert (east_px.px_code_1.sum(), east_px.px_code_3.sum()) == (0, 16 * 32)
