"""Several scenes tiled into one chips folder (tiling.tile_scene_set) and their split labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from rasterio.warp import transform_bounds
from shapely.geometry import box

from geounet._stats import BandStatsAccumulator
from geounet.classes import ClassMap
from geounet.errors import BandMismatchError, ConfigError, GridMismatchError
from geounet.sample_data import make_synthetic_labels, make_synthetic_scene
from geounet.tiling import (
    SceneSource,
    TilingOptions,
    read_index,
    scene_entries,
    tile_scene,
    tile_scene_set,
    write_split_labels,
)

OSM_MAP = ClassMap.from_dict(
    {"column": "fclass", "mapping": {"field": ["farm"], "water": ["water"], "other": ["forest"]}}
)
X0, Y0 = 330000.0, 5822040.0


def _scene(path, col_off_px=0, shape=(64, 96), crs="EPSG:32633", x0=X0, count=4, dtype="uint16"):
    """A scene whose pixels encode their own row/col, placed ``col_off_px`` pixels east."""
    transform = Affine(10.0, 0, x0 + 10.0 * col_off_px, 0, -10.0, Y0)
    return make_synthetic_scene(
        path, shape=shape, count=count, crs=crs, transform=transform, dtype=dtype
    )


def _labels(path, scene_path):
    """Field over the scene's west half, water over its east half."""
    with rasterio.open(scene_path) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    mid = (left + right) / 2
    polygons = [(box(left, bottom, mid, top), "farm"), (box(mid, bottom, right, top), "water")]
    return make_synthetic_labels(path, polygons, crs=crs)


@pytest.fixture
def two_scenes(tmp_path):
    """Two abutting 64 x 96 scenes (west, east), each with its own labels."""
    west = _scene(tmp_path / "west.tif")
    east = _scene(tmp_path / "east.tif", col_off_px=96)
    return {
        "west": (west, _labels(tmp_path / "west.gpkg", west)),
        "east": (east, _labels(tmp_path / "east.gpkg", east)),
    }


OPTIONS = TilingOptions(chip_size=32, split_block_chips=1, split_fractions=(0.5, 0.25, 0.25))


def _sources(scenes, splits=None):
    splits = splits or {}
    return [
        SceneSource(str(img), name=name, labels=lab, split=splits.get(name))
        for name, (img, lab) in scenes.items()
    ]


def test_scenes_go_into_one_chips_folder_with_provenance_and_pooled_stats(tmp_path, two_scenes):
    out = tmp_path / "chips"
    result = tile_scene_set(_sources(two_scenes), out, class_map=OSM_MAP, options=OPTIONS)
    index = read_index(out)
    assert result.chips_written == len(index) == 2 * 6
    assert sorted(set(index["scene"])) == ["east", "west"]
    assert all(
        cid.startswith(f"{s}_") for cid, s in zip(index["chip_id"], index["scene"], strict=True)
    )
    # Every chip holds the pixels of its own scene at its own place (band 1 = row, 2 = col).
    for rec in index.itertuples():
        with rasterio.open(out / rec.image) as chip, rasterio.open(two_scenes[rec.scene][0]) as src:
            assert chip.crs == src.crs
            assert chip.transform == src.transform * Affine.translation(rec.col_off, rec.row_off)
            data = chip.read()
            np.testing.assert_array_equal(data[0], np.arange(rec.row_off, rec.row_off + 32)[:, None]
                                          .repeat(32, 1))  # fmt: skip
            np.testing.assert_array_equal(data[1][0], np.arange(rec.col_off, rec.col_off + 32))
            with rasterio.open(out / rec.label) as lab:
                # West half of each scene field (1), east half water (2).
                expected = np.where(np.arange(rec.col_off, rec.col_off + 32) < 48, 1, 2)
                np.testing.assert_array_equal(lab.read(1)[0], expected)
    # Statistics pool the valid pixels of both scenes: exactly the statistics of both together.
    acc = BandStatsAccumulator(4, "uint16")
    for img, _ in two_scenes.values():
        with rasterio.open(img) as src:
            acc.add(src.read().reshape(4, -1))
    stats = json.loads((out / "stats.json").read_text())
    expected = acc.result(list(stats["bands"]))
    np.testing.assert_allclose(stats["mean"], expected["mean"])
    np.testing.assert_allclose(stats["std"], expected["std"])
    meta = json.loads((out / "tiling.json").read_text())
    assert [e["name"] for e in meta["scenes"]] == ["west", "east"]
    assert meta["chips"]["written"] == 12 and len(meta["labels"]) == 2
    assert json.loads((out / "classes.json").read_text())["classes"][1]["name"] == "field"
    # Each scene is split by its own spatial blocks (seed + k): every chip in one split.
    assert set(index["split"]) <= {"train", "val", "test", "buffer"}
    for entry in meta["scenes"]:
        assert sum(entry["splits"].values()) == entry["chips"]["written"] == 6


def test_a_scene_held_out_whole_is_all_test_and_shares_no_chip(tmp_path, two_scenes):
    out = tmp_path / "chips"
    tile_scene_set(
        _sources(two_scenes, {"west": "train", "east": "test"}), out,
        class_map=OSM_MAP, options=OPTIONS,
    )  # fmt: skip
    index = read_index(out)
    assert set(index.loc[index["scene"] == "east", "split"]) == {"test"}
    assert set(index.loc[index["scene"] == "west", "split"]) == {"train"}
    # The test reference of the held-out scene is that scene's labels on its own grid.
    ref = write_split_labels(out, "test", tmp_path / "ref.tif", scene="east")
    with rasterio.open(ref) as dst, rasterio.open(two_scenes["east"][0]) as src:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert dst.shape == src.shape
        data = dst.read(1)
        assert (data[:, :48] == 1).all() and (data[:, 48:] == 2).all()
    # A scene without test chips gives an all-ignored reference; a multi-scene folder needs
    # the scene named.
    with rasterio.open(write_split_labels(out, "test", tmp_path / "w.tif", scene="west")) as w:
        assert (w.read(1) == 255).all()
    with pytest.raises(ConfigError, match=r"holds the scenes \['west', 'east'\]"):
        write_split_labels(out, "test", tmp_path / "x.tif")
    assert [e["split"] for e in scene_entries(out)] == ["train", "test"]


def test_one_scene_set_is_tile_scene(tmp_path, two_scenes):
    img, lab = two_scenes["west"]
    tile_scene(img, tmp_path / "a", labels=lab, class_map=OSM_MAP, options=OPTIONS)
    tile_scene_set([SceneSource(str(img), labels=lab)], tmp_path / "b", class_map=OSM_MAP,
                   options=OPTIONS)  # fmt: skip
    a, b = read_index(tmp_path / "a"), read_index(tmp_path / "b")
    assert list(a["chip_id"]) == list(b["chip_id"]) and list(a["split"]) == list(b["split"])
    assert set(a["scene"]) == {"west"}  # the file name, as chip ids always had
    assert (tmp_path / "a" / "stats.json").read_text() == (
        tmp_path / "b" / "stats.json"
    ).read_text()


def test_an_old_one_scene_folder_still_gives_its_split_labels(tmp_path, two_scenes):
    img, lab = two_scenes["west"]
    out = tmp_path / "chips"
    tile_scene(img, out, labels=lab, class_map=OSM_MAP, options=OPTIONS)
    new = write_split_labels(out, "test", tmp_path / "new.tif")
    # A folder from before scenes were recorded: no `scenes` in tiling.json, no column.
    meta = json.loads((out / "tiling.json").read_text())
    del meta["scenes"]
    (out / "tiling.json").write_text(json.dumps(meta))
    index = read_index(out).drop(columns="scene")
    index.to_file(out / "index.gpkg", layer="chips", driver="GPKG")
    assert [e["name"] for e in scene_entries(out)] == ["west"]
    old = write_split_labels(out, "test", tmp_path / "old.tif")
    with rasterio.open(new) as a, rasterio.open(old) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
        assert (a.read(1) != 255).any()


def test_the_index_is_in_the_first_scenes_crs(tmp_path):
    # The same 10 m pixels in two UTM zones: the chips keep their CRS, the index reprojects.
    a = _scene(tmp_path / "a.tif", shape=(32, 64))
    b = _scene(tmp_path / "b.tif", shape=(32, 64), crs="EPSG:32634", x0=170000.0)
    out = tmp_path / "chips"
    tile_scene_set([SceneSource(str(a), name="a"), SceneSource(str(b), name="b")], out,
                   options=TilingOptions(chip_size=32))  # fmt: skip
    index = read_index(out)
    assert index.crs.to_epsg() == 32633
    rec = index[index["scene"] == "b"].iloc[0]
    with rasterio.open(out / rec["image"]) as chip:
        assert chip.crs.to_epsg() == 32634
        expected = box(*chip.bounds)
    # The footprint is the chip's square in zone 33: its corners reprojected, its area kept
    # (320 m x 320 m, to the UTM scale factor).
    corners = np.array(rec.geometry.exterior.coords)[:4]
    xs, ys = rasterio.warp.transform("EPSG:32634", "EPSG:32633", *zip(*box(*expected.bounds)
                                     .exterior.coords[:4], strict=True))  # fmt: skip
    assert {(round(x, 3), round(y, 3)) for x, y in corners} == {
        (round(x, 3), round(y, 3)) for x, y in zip(xs, ys, strict=True)
    }
    assert rec.geometry.area == pytest.approx(320 * 320, rel=0.01)
    left, bottom, right, top = transform_bounds("EPSG:32634", "EPSG:32633", *expected.bounds)
    assert rec.geometry.within(box(left - 1, bottom - 1, right + 1, top + 1))


@pytest.mark.parametrize(
    ("second", "error", "match"),
    [
        ({"count": 3}, BandMismatchError, "has bands"),
        ({"dtype": "int16"}, BandMismatchError, "int16"),
        ({"res": 20.0}, GridMismatchError, "pixel size|pixels"),
    ],
)
def test_scenes_that_cannot_train_one_model_are_refused_before_writing(
    tmp_path, second, error, match
):
    a = _scene(tmp_path / "a.tif", shape=(32, 32))
    res = second.pop("res", 10.0)
    b = make_synthetic_scene(
        tmp_path / "b.tif", shape=(32, 32), transform=Affine(res, 0, X0, 0, -res, Y0),
        **{"count": 4, **second},
    )  # fmt: skip
    with pytest.raises(error, match=match):
        tile_scene_set([SceneSource(str(a), name="a"), SceneSource(str(b), name="b")],
                       tmp_path / "out", options=TilingOptions(chip_size=16))  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_scene_names_must_be_distinct_and_usable(tmp_path, two_scenes):
    img, lab = two_scenes["west"]
    with pytest.raises(ConfigError, match=r"\['x'\] are given to more than one scene"):
        tile_scene_set([SceneSource(str(img), name="x"), SceneSource(str(img), name="x")],
                       tmp_path / "out", options=OPTIONS)  # fmt: skip
    with pytest.raises(ConfigError, match="cannot name chips and folders"):
        SceneSource(str(img), name="../up")
    with pytest.raises(ConfigError, match="no labels while the others do"):
        tile_scene_set([SceneSource(str(img), name="a", labels=lab),
                        SceneSource(str(img), name="b")], tmp_path / "out",
                       class_map=OSM_MAP, options=OPTIONS)  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_overlapping_scenes_are_logged(tmp_path, caplog):
    a = _scene(tmp_path / "a.tif", shape=(32, 64))
    b = _scene(tmp_path / "b.tif", shape=(32, 64), col_off_px=32)  # half of a's width shared
    tile_scene_set([SceneSource(str(a), name="a"), SceneSource(str(b), name="b")],
                   tmp_path / "out", options=TilingOptions(chip_size=32))  # fmt: skip
    assert any("'a' and 'b' overlap" in r.getMessage() for r in caplog.records)
