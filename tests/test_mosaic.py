"""One mosaic as blocks on a 2-worker dask cluster: the same map as one process, resume, kills."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys

import cloudpickle
import numpy as np
import pytest
import rasterio
import torch
from _models import BANDS, make_model_file, make_sample_model_file, write_sample_crop
from _rasters import UTM_GRID, write_class_raster
from affine import Affine

from geounet.classes import ClassScheme
from geounet.distributed import ClusterOptions
from geounet.errors import GridMismatchError
from geounet.inference import ModelSpec, PredictOptions, predict_scene
from geounet.mosaic import MosaicOptions, plan_blocks, predict_mosaic
from geounet.sample_data import make_synthetic_scene

cloudpickle.register_pickle_by_value(sys.modules[__name__])

OPTIONS = PredictOptions(chip_size=32, overlap=8, batch_size=4, probabilities=True, device="cpu")
SCENE_SHAPE = (70, 90)
OFFSETS = ((0, 0), (0, 60), (50, 0), (50, 60))  # rows, cols: four scenes overlapping by 20/30 px


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The reference runs with the workers' one torch thread: kernels sum by thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _scenes(folder, *, poison=False):
    """Four overlapping 4-band crops of the bundled Sentinel-2 sample, on its 10 m grid."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i, (row, col) in enumerate(OFFSETS):
        rows, cols = (
            (256 + row, 256 + row + SCENE_SHAPE[0]),
            (512 + col, 512 + col + SCENE_SHAPE[1]),
        )
        path = write_sample_crop(folder / f"s{i}.tif", rows=rows, cols=cols)
        if poison and i == 0:
            with rasterio.open(path, "r+") as ds:
                data = ds.read()
                data[:, :40, :40] = 1234  # constant chips at the mosaic's top-left corner
                ds.write(data)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory):
    """A tiny U-Net fitted to the sample, so that the map has several classes."""
    return make_sample_model_file(tmp_path_factory.mktemp("model"), chip_size=32)


def _assert_same_raster(a, b):
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.profile == y.profile
        assert x.crs == y.crs and x.transform == y.transform
        np.testing.assert_array_equal(x.read(), y.read())
        np.testing.assert_array_equal(x.read_masks(), y.read_masks())
        assert x.tags() == y.tags() and x.descriptions == y.descriptions
        assert x.overviews(1) == y.overviews(1)
        if x.count == 1:
            assert x.colormap(1) == y.colormap(1)


def _assert_same_map(out, single):
    for name in ("classes.tif", "probabilities.tif"):
        _assert_same_raster(out / name, single / name)
        with (
            rasterio.open(out / name.replace(".tif", ".vrt")) as v,
            rasterio.open(single / name) as s,
        ):
            np.testing.assert_array_equal(v.read(), s.read())
            assert v.transform == s.transform and v.crs == s.crs
    for name in ("classes.tif.aux.xml", "classes.qml"):
        assert (out / name).read_bytes() == (single / name).read_bytes()


def test_blocks_give_the_single_process_map_for_two_block_sizes(tmp_path, client, sample_model):
    model = sample_model
    scenes = _scenes(tmp_path / "scenes")
    first = predict_mosaic(
        model, scenes, tmp_path / "b48", options=OPTIONS,
        mosaic_options=MosaicOptions(block_size=48), cluster=ClusterOptions(scheduler=client),
    )  # fmt: skip
    assert first.ok, first.failed
    vrt = tmp_path / "b48" / "mosaic.vrt"
    with rasterio.open(vrt) as ds:
        assert (ds.height, ds.width) == (120, 150) and ds.descriptions == BANDS
    single = predict_scene(model, vrt, tmp_path / "single", options=OPTIONS).classes.parent
    with rasterio.open(single / "classes.tif") as ds:
        assert len(np.unique(ds.read(1))) >= 3  # not a trivial one-class map
    _assert_same_map(tmp_path / "b48", single)
    assert len(first.blocks) == 3 * 4 and len(first.computed) == 12
    second = predict_mosaic(
        model, vrt, tmp_path / "b64", options=OPTIONS,
        mosaic_options=MosaicOptions(block_size=64), cluster=ClusterOptions(scheduler=client),
    )  # fmt: skip
    assert second.ok and len(second.blocks) == 2 * 3
    _assert_same_map(tmp_path / "b64", single)
    manifest = json.loads(second.manifest.read_text())
    assert manifest["blocks_total"] == 6 and manifest["blocks_failed"] == 0
    item = json.loads((tmp_path / "b64" / "item.json").read_text())
    assert item["assets"]["classes"]["href"] == "./classes.tif"
    block = tmp_path / "b64" / "blocks" / "r000064_c000064"
    with rasterio.open(block / "classes.tif") as b, rasterio.open(single / "classes.tif") as s:
        window = rasterio.windows.Window(64, 64, 64, 56)
        np.testing.assert_array_equal(b.read(1), s.read(1, window=window))
        assert b.transform == rasterio.windows.transform(window, s.transform)


def test_plan_runs_whole_batches_around_each_block(tmp_path):
    from geounet.grid import ChipGrid

    class Scene:
        shape, transform, crs = (120, 150), Affine.identity(), "EPSG:32633"

    grid = ChipGrid.from_scene(Scene(), 32, 24)
    blocks = plan_blocks(grid, 48, 4)
    assert [b.block_id for b in blocks[:4]] == [
        "r000000_c000000", "r000000_c000048", "r000000_c000096", "r000000_c000144",
    ]  # fmt: skip
    assert blocks[3].width == 6 and blocks[-1].height == 24
    covered = set().union(*(b.batches for b in blocks))
    assert covered == set(range((len(grid) + 3) // 4))  # every batch runs somewhere


class TripwireModel(torch.nn.Module):
    """A 1x1 convolution that kills its worker on a constant chip (the poison corner).

    ``kill`` kills the first time only (the marker file goes first), ``kill-always`` every
    time, ``none`` never.
    """

    def __init__(self, marker, action):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 4, 1)
        self.marker, self.action = str(marker), action

    def forward(self, x):
        constant = any(bool((c == c.flatten()[0]).all()) for c in x)
        if constant and self.action == "kill-always":
            os.kill(os.getpid(), signal.SIGKILL)
        if constant and self.action == "kill" and os.path.exists(self.marker):
            os.unlink(self.marker)
            os.kill(os.getpid(), signal.SIGKILL)
        return self.conv(x)


def _spec():
    return ModelSpec(
        bands=BANDS, mean=np.full(4, 3000.0, np.float32), std=np.full(4, 2000.0, np.float32),
        scheme=ClassScheme.default(), chip_size=32,
    )  # fmt: skip


def test_a_killed_worker_still_gives_the_same_map(tmp_path, client):
    marker = tmp_path / "trip"
    marker.touch()
    scenes = _scenes(tmp_path / "scenes", poison=True)
    before = set(client.scheduler_info()["workers"])
    result = predict_mosaic(
        TripwireModel(marker, "kill"), scenes, tmp_path / "out", metadata=_spec(),
        options=OPTIONS, mosaic_options=MosaicOptions(block_size=48),
        cluster=ClusterOptions(scheduler=client),
    )  # fmt: skip
    assert not marker.exists() and before - set(client.scheduler_info()["workers"])
    assert result.ok, result.failed
    single = predict_scene(
        TripwireModel(marker, "none"), tmp_path / "out" / "mosaic.vrt", tmp_path / "single",
        metadata=_spec(), options=OPTIONS,
    ).classes.parent  # fmt: skip
    _assert_same_map(tmp_path / "out", single)
    assert list((tmp_path / "out" / "blocks").glob(".*")) == []  # no working folder left


def test_a_block_that_keeps_failing_is_named_and_a_rerun_does_only_it(tmp_path, client):
    scenes = _scenes(tmp_path / "scenes", poison=True)
    kwargs = dict(
        metadata=_spec(), options=OPTIONS, mosaic_options=MosaicOptions(block_size=64),
        cluster=ClusterOptions(scheduler=client, retries=0),
    )  # fmt: skip
    scheduler = client.cluster.scheduler
    allowed, scheduler.allowed_failures = scheduler.allowed_failures, 0  # one crash is final
    try:
        failed = predict_mosaic(
            TripwireModel(tmp_path / "unused", "kill-always"), scenes, tmp_path / "out", **kwargs
        )
    finally:
        scheduler.allowed_failures = allowed
    bad = {b.block_id for b in failed.failed}
    assert "r000000_c000000" in bad and failed.outputs == {}
    assert all(b.error.startswith("KilledWorker") for b in failed.failed)
    assert not (tmp_path / "out" / "classes.tif").exists()
    manifest = json.loads(failed.manifest.read_text())
    assert manifest["blocks_failed"] == len(bad)
    assert {b["id"] for b in manifest["blocks"] if b["status"] == "failed"} == bad
    finished = {b.block_id for b in failed.blocks if b.status == "ok"}
    assert finished  # the blocks not waiting on the killed worker completed
    stamps = {
        b: (tmp_path / "out" / "blocks" / b / "classes.tif").stat().st_mtime_ns for b in finished
    }
    rerun = predict_mosaic(TripwireModel(tmp_path / "unused", "none"), scenes, tmp_path / "out",
                           **kwargs)  # fmt: skip
    assert rerun.ok and set(rerun.computed) == bad
    assert {b.block_id for b in rerun.blocks if b.status == "skipped"} == finished
    for b, stamp in stamps.items():  # recorded blocks were not written again
        assert (tmp_path / "out" / "blocks" / b / "classes.tif").stat().st_mtime_ns == stamp
    single = predict_scene(
        TripwireModel(tmp_path / "unused", "none"), tmp_path / "out" / "mosaic.vrt",
        tmp_path / "single", metadata=_spec(), options=OPTIONS,
    ).classes.parent  # fmt: skip
    _assert_same_map(tmp_path / "out", single)


def test_scenes_off_one_grid_are_refused_before_any_task(tmp_path):
    model = make_model_file(tmp_path, chip_size=32)[0]
    a = make_synthetic_scene(tmp_path / "a.tif", shape=(40, 40), count=4)
    b = make_synthetic_scene(
        tmp_path / "b.tif", shape=(40, 40), count=4,
        transform=Affine(10.0, 0, 330005.0, 0, -10.0, 5822040.0),
    )  # fmt: skip
    nowhere = ClusterOptions(scheduler="tcp://127.0.0.1:9")
    with pytest.raises(GridMismatchError, match="b.tif lies 0.500 columns"):
        predict_mosaic(model, [a, b], tmp_path / "out", cluster=nowhere)


@pytest.mark.parametrize("simplify_m", [0.0, 15.0])
def test_polygons_on_the_cluster_equal_the_single_process_vectoriser(tmp_path, client, simplify_m):
    import geopandas as gpd
    from geopandas.testing import assert_geodataframe_equal

    from geounet.mosaic import vectorize_raster_on_cluster
    from geounet.vectorize import vectorize_raster

    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 4, (15, 17)).astype(np.uint8)
    data = np.kron(coarse, np.ones((10, 10), np.uint8))  # regions crossing many block seams
    noise = rng.random(data.shape) < 0.05
    data[noise] = rng.integers(0, 4, noise.sum())
    data[60:70, 80:95] = 255  # nodata: a hole in the polygons
    classes = write_class_raster(tmp_path / "classes.tif", data)
    probs = tmp_path / "probabilities.tif"
    profile = dict(driver="GTiff", width=170, height=150, count=4, dtype="uint8",
                   crs="EPSG:32633", transform=UTM_GRID)  # fmt: skip
    with rasterio.open(probs, "w", **profile) as dst:
        dst.write(rng.integers(0, 256, (4, 150, 170), dtype=np.uint8))
    kwargs = dict(probabilities_path=probs, simplify_m=simplify_m, min_area_m2=200.0,
                  block_size=48)  # fmt: skip
    single = vectorize_raster(classes, tmp_path / "single.gpkg", **kwargs)
    many = vectorize_raster_on_cluster(
        classes, tmp_path / "many.gpkg", cluster=ClusterOptions(scheduler=client), **kwargs
    )
    want, got = gpd.read_file(single, layer="polygons"), gpd.read_file(many, layer="polygons")
    assert len(want) > 50 and want.geometry.interiors.map(len).sum() > 0
    assert_geodataframe_equal(got, want)  # same order, attributes and vertices


def test_cli_predicts_a_mosaic_and_vectorizes_it_on_the_cluster(tmp_path, client, sample_model):
    from click.testing import CliRunner

    from geounet.cli.main import cli
    from geounet.vectorize import vectorize_raster

    scenes = [str(p) for p in _scenes(tmp_path / "scenes")]
    address = client.scheduler.address
    out = tmp_path / "map"
    args = ["predict", str(sample_model), *scenes, "--out", str(out), "--mosaic",
            "--scheduler", address, "--block-size", "64", "--chip-size", "32", "--overlap", "8",
            "--device", "cpu"]  # fmt: skip
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    assert "predicted 6 of 6 blocks (0 finished earlier)" in run.output
    again = CliRunner().invoke(cli, args)
    assert "predicted 0 of 6 blocks (6 finished earlier)" in again.output, again.output
    options = dataclasses.replace(OPTIONS, probabilities=False)
    single = predict_scene(sample_model, out / "mosaic.vrt", tmp_path / "single", options=options)
    _assert_same_raster(out / "classes.tif", single.classes)
    run = CliRunner().invoke(cli, ["vectorize", str(out / "classes.vrt"), "--out",
                                   str(tmp_path / "map.gpkg"), "--scheduler", address])  # fmt: skip
    assert run.exit_code == 0, run.output
    want = vectorize_raster(single.classes, tmp_path / "single.gpkg")
    import geopandas as gpd
    from geopandas.testing import assert_geodataframe_equal

    assert_geodataframe_equal(
        gpd.read_file(tmp_path / "map.gpkg", layer="polygons"),
        gpd.read_file(want, layer="polygons"),
    )
    bad = CliRunner().invoke(cli, ["predict", str(sample_model), "--out", str(out), "--mosaic",
                                   "--scenes", scenes[0]])  # fmt: skip
    assert bad.exit_code == 2 and "--mosaic predicts SCENE" in bad.output


@pytest.mark.parametrize("nodata", [None, 0])
def test_mosaic_vrt_matches_gdalbuildvrt(tmp_path, nodata):
    import shutil
    import subprocess

    from geounet._mosaic_vrt import mosaic_vrt

    paths = []
    for i, (row, col) in enumerate(((0, 0), (20, 30), (45, 5))):  # an uncovered corner
        t = Affine(10.0, 0.0, 330000.0 + 10 * col, 0.0, -10.0, 5822040.0 - 10 * row)
        path = make_synthetic_scene(tmp_path / f"s{i}.tif", shape=(40, 50), count=4,
                                    fill="random", transform=t, nodata=nodata)  # fmt: skip
        if nodata is not None:
            with rasterio.open(path, "r+") as ds:
                data = ds.read()
                data[:, 5:15, 5:15] = 0  # a hole the scene below shows through
                ds.write(data)
        paths.append(path)
    ours = mosaic_vrt(paths, tmp_path / "ours.vrt")
    with rasterio.open(ours) as ds:
        assert (ds.height, ds.width) == (85, 80) and ds.transform.c == 330000.0
        data, mask = ds.read(), ds.read_masks(1)
    assert (mask[60:, 60:] == 0).all()  # no scene there: nodata, not zeros taken for data
    if shutil.which("gdalbuildvrt") is None:
        pytest.skip("gdalbuildvrt is not installed")
    theirs = tmp_path / "theirs.vrt"
    subprocess.run(["gdalbuildvrt", "-q", str(theirs), *map(str, paths)], check=True)
    with rasterio.open(theirs) as ds:
        np.testing.assert_array_equal(data, ds.read())
        if nodata is not None:
            np.testing.assert_array_equal(mask, ds.read_masks(1))
