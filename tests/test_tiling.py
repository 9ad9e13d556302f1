from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds
from shapely.geometry import box

from geounet.classes import ClassMap, ClassScheme
from geounet.errors import ChipSizeError, CRSError, InputFileError, LabelError, OutputError
from geounet.grid import ChipGrid
from geounet.labels import LabelOptions
from geounet.sample_data import make_synthetic_labels, make_synthetic_scene
from geounet.tiling import BUFFER_SPLIT, TilingOptions, assign_splits, read_index, tile_scene

OSM_MAP = ClassMap.from_dict(
    {
        "column": "fclass",
        "mapping": {
            "field": ["farm"],
            "water": ["water"],
            "building": ["residential"],
            "other": ["forest"],
        },
    }
)


def _assert_chips_match_scene(scene_path: Path, out: Path, fill: int | None = None) -> int:
    """Every chip equals the scene at the chip's georeferenced bounds (and encodes them)."""
    index = read_index(out)
    with rasterio.open(scene_path) as scene:
        whole = scene.read()
        for rec in index.itertuples():
            with rasterio.open(out / rec.image) as chip:
                assert chip.crs == scene.crs
                data = chip.read()
                win = from_bounds(*chip.bounds, transform=scene.transform)
                r0, c0 = round(win.row_off), round(win.col_off)
                assert abs(win.row_off - r0) < 1e-6 and abs(win.col_off - c0) < 1e-6
                assert (round(win.height), round(win.width)) == data.shape[1:]
                assert chip.descriptions == scene.descriptions or all(chip.descriptions)
                rows = np.arange(r0, r0 + data.shape[1])[:, None]
                cols = np.arange(c0, c0 + data.shape[2])[None, :]
                inside = (rows < scene.height) & (cols < scene.width) & (rows >= 0) & (cols >= 0)
                inside = np.broadcast_to(inside, data.shape[1:])
                # Pixels inside the scene: identical to the scene, and band 1/2 hold row/col.
                expected = whole[
                    :, max(r0, 0) : r0 + data.shape[1], max(c0, 0) : c0 + data.shape[2]
                ]
                h, w = expected.shape[1:]
                np.testing.assert_array_equal(data[:, :h, :w], expected)
                np.testing.assert_array_equal(
                    data[0][inside], np.broadcast_to(rows, inside.shape)[inside]
                )
                np.testing.assert_array_equal(
                    data[1][inside], np.broadcast_to(cols, inside.shape)[inside]
                )
                if fill is not None:
                    assert (data[:, ~inside] == fill).all()
    return len(index)


@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326"])
@pytest.mark.parametrize(
    ("shape", "chip", "stride"), [((301, 257), 64, 48), ((97, 131), 32, 32), ((65, 200), 64, 21)]
)
def test_chips_equal_scene_at_their_bounds(tmp_path, crs, shape, chip, stride):
    scene = make_synthetic_scene(tmp_path / "s.tif", shape=shape, count=3, crs=crs)
    out = tmp_path / "chips"
    result = tile_scene(scene, out, options=TilingOptions(chip_size=chip, stride=stride, workers=2))
    grid = ChipGrid.from_scene(rasterio.open(scene), chip, stride)
    assert result.chips_written == len(grid) == _assert_chips_match_scene(scene, out)


def test_padded_edge_chips_hold_nodata(tmp_path):
    scene = make_synthetic_scene(tmp_path / "s.tif", shape=(70, 90), count=2, nodata=65535)
    out = tmp_path / "chips"
    tile_scene(
        scene,
        out,
        options=TilingOptions(chip_size=64, stride=64, edge="pad", max_nodata_fraction=1.0),
    )
    assert _assert_chips_match_scene(scene, out, fill=65535) == 4
    index = read_index(out)
    corner = index[(index.row_off == 64) & (index.col_off == 64)].iloc[0]
    assert corner.nodata_fraction == pytest.approx(1 - (6 * 26) / 64**2)


def test_chip_larger_than_scene_needs_padding(tmp_path, utm_scene):
    with pytest.raises(ChipSizeError, match="larger than the scene"):
        tile_scene(utm_scene, tmp_path / "o", options=TilingOptions(chip_size=512))
    assert not (tmp_path / "o").exists()
    assert list(tmp_path.glob(".o.partial-*")) == []
    tile_scene(
        utm_scene,
        tmp_path / "o",
        options=TilingOptions(chip_size=512, edge="pad", max_nodata_fraction=1.0),
    )
    assert len(read_index(tmp_path / "o")) == 1


def test_label_masks_align_to_the_pixel(tmp_path, utm_scene):
    with rasterio.open(utm_scene) as s:
        t = s.transform

    # A polygon covering exactly scene rows 40..59 and cols 100..129 (pixel edges), and a
    # "water" polygon one pixel wide inside it at col 110, drawn on top (smaller wins).
    def px_box(r0, c0, r1, c1):
        x0, y0 = t @ (c0, r0)
        x1, y1 = t @ (c1, r1)
        return box(x0, y1, x1, y0)

    labels = make_synthetic_labels(
        tmp_path / "l.gpkg",
        [
            (px_box(40, 100, 60, 130), "farm"),
            (px_box(45, 110, 55, 111), "water"),
            (px_box(0, 0, 5, 5), "unknown"),
        ],
        crs="EPSG:32633",
    )
    out = tmp_path / "chips"
    tile_scene(
        utm_scene,
        out,
        labels=labels,
        class_map=OSM_MAP,
        options=TilingOptions(chip_size=64, stride=48),
    )
    index = read_index(out)
    assert {"px_other", "px_field", "px_water", "px_building", "px_ignore"} <= set(index.columns)
    scheme = ClassScheme.default()
    checked = 0
    for rec in index.itertuples():
        with rasterio.open(out / rec.label) as lab, rasterio.open(out / rec.image) as img:
            assert lab.transform == img.transform and lab.crs == img.crs
            assert lab.nodata == 255 and lab.dtypes[0] == "uint8"
            assert lab.colormap(1)[1][:3] == scheme.classes[1].color
            mask = lab.read(1)
            coords = img.read()[:2]  # band 1 = scene row, band 2 = scene col
        rows, cols = coords[0].astype(int), coords[1].astype(int)
        expected = np.full(mask.shape, 255)
        expected[(rows >= 40) & (rows < 60) & (cols >= 100) & (cols < 130)] = 1
        expected[(rows >= 45) & (rows < 55) & (cols == 110)] = 2
        np.testing.assert_array_equal(mask, expected)
        assert rec.px_field == (expected == 1).sum() and rec.px_water == (expected == 2).sum()
        checked += (expected != 255).any()
    assert checked >= 1


def test_labels_in_another_crs_are_reprojected_and_user_told(tmp_path, utm_scene):
    with rasterio.open(utm_scene) as s:
        bounds = s.bounds
    poly = box(bounds.left + 500, bounds.bottom + 500, bounds.left + 1500, bounds.bottom + 1500)
    frame = gpd.GeoDataFrame({"fclass": ["water"]}, geometry=[poly], crs="EPSG:32633").to_crs(
        "EPSG:4326"
    )
    frame.to_file(tmp_path / "l.geojson")
    with pytest.warns(UserWarning, match="reprojecting them to the scene CRS"):
        tile_scene(
            utm_scene,
            tmp_path / "c",
            labels=tmp_path / "l.geojson",
            class_map=OSM_MAP,
            options=TilingOptions(chip_size=64, edge="pad", max_nodata_fraction=1.0),
        )
    index = read_index(tmp_path / "c")
    assert abs(index.px_water.sum() - 100 * 100) < 100 * 4 * 2  # area survives reprojection


def test_raster_labels_resampled_nearest(tmp_path, utm_scene):
    with rasterio.open(utm_scene) as s:
        t, crs = s.transform, s.crs
    # A class raster at 20 m (half the resolution): each label pixel covers 2x2 scene pixels.
    lab = np.zeros((151, 129), dtype="uint8")
    lab[10:20, 30:40] = 2
    lab[0, 0] = 200  # not a class -> ignore
    from affine import Affine

    with rasterio.open(
        tmp_path / "lab.tif",
        "w",
        driver="GTiff",
        width=129,
        height=151,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=Affine(20, 0, t.c, 0, -20, t.f),
    ) as dst:
        dst.write(lab, 1)
    out = tmp_path / "c"
    # classes_from_labels=False: the values are ids of the default scheme (the old reading).
    options = TilingOptions(chip_size=64, labels=LabelOptions(classes_from_labels=False))
    tile_scene(utm_scene, out, labels=tmp_path / "lab.tif", options=options)
    for rec in read_index(out).itertuples():
        with rasterio.open(out / rec.label) as l, rasterio.open(out / rec.image) as img:
            mask = l.read(1)
            rows, cols = img.read()[:2].astype(int)
        expected = lab[rows // 2, cols // 2]
        expected = np.where(expected > 3, 255, expected)
        np.testing.assert_array_equal(mask, expected)


def test_outputs_stats_classes_and_index(tmp_path):
    scene = make_synthetic_scene(
        tmp_path / "s.tif", shape=(200, 150), count=3, fill="random", nodata=0
    )
    with rasterio.open(scene, "r+") as ds:
        data = ds.read()
        data[:, :30, :40] = 0  # a nodata corner
        ds.write(data)
    out = tmp_path / "c"
    tile_scene(scene, out, options=TilingOptions(chip_size=50, stride=40, max_nodata_fraction=0.3))
    stats = json.loads((out / "stats.json").read_text())
    valid = (data != 0).all(axis=0)
    for b in range(3):
        v = data[b][valid].astype(np.float64)
        assert stats["mean"][b] == pytest.approx(v.mean(), rel=1e-12)
        assert stats["std"][b] == pytest.approx(v.std(), rel=1e-9)
        assert stats["min"][b] == v.min() and stats["max"][b] == v.max()
        name = stats["bands"][b]
        assert stats["per_band"][name]["valid_pixels"] == valid.sum()
        assert stats["per_band"][name]["percentiles"]["p2"] == np.percentile(
            v, 2, method="inverted_cdf"
        )
        assert stats["per_band"][name]["percentiles"]["p98"] == np.percentile(
            v, 98, method="inverted_cdf"
        )
    classes = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes["classes"]] == ["other", "field", "water", "building"]
    assert classes["ignore_index"] == 255
    index = read_index(out)
    assert index.crs.to_epsg() == 32633
    # The chip at (0, 0) is 30x40/50x50 = 48 % nodata -> skipped; the index says what was kept.
    assert not ((index.row_off == 0) & (index.col_off == 0)).any()
    meta = json.loads((out / "tiling.json").read_text())
    assert meta["chips"]["skipped_nodata"] >= 1
    assert meta["chips"]["written"] == len(index)
    for geom, rec in zip(index.geometry, index.itertuples(), strict=True):
        with rasterio.open(out / rec.image) as chip:
            assert geom.equals(box(*chip.bounds))


def test_spatial_split_has_buffer_so_no_overlap_crosses_splits(tmp_path):
    scene = make_synthetic_scene(tmp_path / "s.tif", shape=(600, 700), count=1)
    with rasterio.open(scene) as ds:
        grid = ChipGrid.from_scene(ds, 64, 48)
    opts = TilingOptions(chip_size=64, stride=48, split_block_chips=3, seed=3)
    splits = assign_splits(grid, opts)
    assert set(splits.values()) == {"train", "val", "test", BUFFER_SPLIT}
    chips = {(c.grid_row, c.grid_col): c for c in grid}
    kept = {k: v for k, v in splits.items() if v != BUFFER_SPLIT}
    for a, sa in kept.items():
        for b, sb in kept.items():
            if sa != sb:
                ca, cb = chips[a], chips[b]
                overlap_r = abs(ca.row_off - cb.row_off) < 64
                overlap_c = abs(ca.col_off - cb.col_off) < 64
                assert not (overlap_r and overlap_c), f"{a} ({sa}) overlaps {b} ({sb})"
    assert assign_splits(grid, opts) == splits  # deterministic for a seed
    assert sum(v == "train" for v in splits.values()) > sum(v == "val" for v in splits.values())


def test_scene_without_crs_fails_before_writing(tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8") as d:
        d.write(np.ones((1, 20, 20), "uint8"))
    with pytest.raises(CRSError, match=r"nocrs.tif has no CRS.*gdal_edit"):
        tile_scene(path, tmp_path / "out", options=TilingOptions(chip_size=8))
    assert not (tmp_path / "out").exists()


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(InputFileError, match=r"broken.tif.*GeoTIFF"):
        tile_scene(bad, tmp_path / "out")
    with pytest.raises(InputFileError, match="does not exist"):
        tile_scene(tmp_path / "missing.tif", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_label_column_missing_lists_columns(tmp_path, utm_scene):
    labels = make_synthetic_labels(
        tmp_path / "l.gpkg",
        [(box(330000, 5819000, 331000, 5820000), "farm")],
        crs="EPSG:32633",
        column="landuse",
    )
    with pytest.raises(LabelError, match=r"no column 'fclass'.*\['landuse'\]"):
        tile_scene(utm_scene, tmp_path / "out", labels=labels, class_map=OSM_MAP)
    assert not (tmp_path / "out").exists()


def test_labels_that_do_not_intersect_the_scene(tmp_path, utm_scene):
    labels = make_synthetic_labels(
        tmp_path / "l.gpkg", [(box(0, 0, 100, 100), "farm")], crs="EPSG:32633"
    )
    with pytest.raises(LabelError, match="intersects the scene"):
        tile_scene(utm_scene, tmp_path / "out", labels=labels, class_map=OSM_MAP)
    assert not (tmp_path / "out").exists()


def test_output_never_half_written(tmp_path, utm_scene, monkeypatch):
    import geounet.tiling as tiling

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiling, "write_index", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        tile_scene(utm_scene, tmp_path / "out", options=TilingOptions(chip_size=64))
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == [utm_scene]


def test_existing_output_needs_overwrite(tmp_path, utm_scene):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="--overwrite"):
        tile_scene(utm_scene, tmp_path / "out", options=TilingOptions(chip_size=64))
    assert (tmp_path / "out" / "keep.txt").exists()
    tile_scene(utm_scene, tmp_path / "out", options=TilingOptions(chip_size=64), overwrite=True)
    assert not (tmp_path / "out" / "keep.txt").exists()
    assert (tmp_path / "out" / "index.gpkg").exists()


def test_raster_labels_outside_their_footprint_are_ignored(tmp_path, utm_scene):

    with rasterio.open(utm_scene) as s:
        t, crs = s.transform, s.crs
    # Class 0 everywhere it covers, no nodata value: only the left 100 columns are covered.
    with rasterio.open(
        tmp_path / "lab.tif",
        "w",
        driver="GTiff",
        width=100,
        height=301,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=t,
    ) as dst:
        dst.write(np.zeros((1, 301, 100), "uint8"))
    out = tmp_path / "c"
    # classes_from_labels=False: the values are ids of the default scheme (the old reading).
    options = TilingOptions(chip_size=64, labels=LabelOptions(classes_from_labels=False))
    tile_scene(utm_scene, out, labels=tmp_path / "lab.tif", options=options)
    for rec in read_index(out).itertuples():
        with rasterio.open(out / rec.label) as lab, rasterio.open(out / rec.image) as img:
            mask = lab.read(1)
            cols = img.read(2).astype(int)
        np.testing.assert_array_equal(mask, np.where(cols < 100, 0, 255))
