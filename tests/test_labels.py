"""Labels the way users have them: class rasters with and without a class map, footprints."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from _rasters import write_class_raster
from affine import Affine
from shapely.geometry import box

from geounet.classes import ClassMap, ClassScheme
from geounet.errors import ConfigError, LabelWarning
from geounet.evaluate import evaluate_prediction
from geounet.labels import LabelOptions
from geounet.sample_data import make_synthetic_labels, make_synthetic_scene
from geounet.tiling import TilingOptions, read_index, tile_scene, write_split_labels

X0, Y0 = 330000.0, 5822040.0
GRID = Affine(10.0, 0, X0, 0, -10.0, Y0)
LANDCOVER = ["forest", "crop", "grass", "water", "urban", "bare", "wetland"]  # codes 1..7
COLOURS = {1: (0, 100, 0, 255), 2: (240, 200, 0, 255), 3: (150, 230, 100, 255),
           4: (0, 80, 220, 255), 5: (200, 0, 0, 255), 6: (180, 180, 180, 255),
           7: (0, 150, 160, 255)}  # fmt: skip


def landcover_codes() -> np.ndarray:
    """64 x 64 codes 1..7 in vertical stripes (code 7 only in the last column), 0 = nodata."""
    codes = np.repeat(np.arange(1, 8, dtype=np.uint8), 10)[:64][np.newaxis].repeat(64, axis=0)
    codes[-1, :] = 7
    codes[:4, :4] = 0
    return codes


def write_landcover(path: Path, *, categories: bool) -> Path:
    """A 64 x 64 land-cover raster on the scene grid, nodata 0; optionally categorised."""
    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                   crs="EPSG:32633", transform=GRID, nodata=0)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(landcover_codes(), 1)
        if categories:
            dst.write_colormap(1, COLOURS)
    if categories:  # what QGIS/GDAL write: CategoryNames in the PAM sidecar, index = code
        cats = "".join(f"<Category>{n}</Category>" for n in ["", *LANDCOVER])
        path.with_name(path.name + ".aux.xml").write_text(
            f'<PAMDataset><PAMRasterBand band="1"><CategoryNames>{cats}</CategoryNames>'
            "</PAMRasterBand></PAMDataset>"
        )
    return path


def read_masks(chips: Path) -> dict[tuple[int, int], np.ndarray]:
    masks = {}
    for rec in read_index(chips).itertuples():
        with rasterio.open(chips / rec.label) as src:
            masks[(rec.row_off, rec.col_off)] = src.read(1)
    return masks


def mosaic(chips: Path) -> np.ndarray:
    out = np.full((64, 64), 254, np.uint8)
    for (r, c), mask in read_masks(chips).items():
        out[r : r + mask.shape[0], c : c + mask.shape[1]] = mask
    return out


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return make_synthetic_scene(tmp_path / "scene.tif", shape=(64, 64), count=3, fill="random")


def test_landcover_codes_with_a_class_map_are_mapped_explicitly(tmp_path, scene):
    labels = write_landcover(tmp_path / "lc.tif", categories=False)
    cmap = ClassMap.from_dict({
        "classes": [{"id": 0, "name": "other", "color": "#9e9e9e"},
                    {"id": 1, "name": "field", "color": "#e6b422"},
                    {"id": 2, "name": "water", "color": "#1e6edc"}],
        "mapping": {"other": [1, 3, 6, 7], "field": ["2"], "water": [4]},  # 5 (urban): ignored
    })  # fmt: skip
    out = tmp_path / "chips"
    tile_scene(scene, out, labels=labels, class_map=cmap, options=TilingOptions(chip_size=32))
    lookup = np.full(256, 255, np.uint8)
    lookup[[1, 3, 6, 7]], lookup[2], lookup[4] = 0, 1, 2
    np.testing.assert_array_equal(mosaic(out), lookup[landcover_codes()])
    assert ClassScheme.read_json(out / "classes.json").names == ["other", "field", "water"]


def test_landcover_codes_without_a_class_map_take_the_rasters_distinct_codes(
    tmp_path, scene, caplog
):
    labels = write_landcover(tmp_path / "lc.tif", categories=False)
    out = tmp_path / "chips"
    with caplog.at_level(logging.WARNING, logger="geounet.labels"):
        tile_scene(scene, out, labels=labels, options=TilingOptions(chip_size=32))
    # Codes 1..7 become ids 0..6 (code k -> k - 1); nodata stays 255.
    expected = np.where(landcover_codes() == 0, 255, landcover_codes() - 1).astype(np.uint8)
    np.testing.assert_array_equal(mosaic(out), expected)
    scheme = ClassScheme.read_json(out / "classes.json")
    assert scheme.names == [f"code_{k}" for k in range(1, 8)]
    (line,) = [r.getMessage() for r in caplog.records if "has no class map" in r.getMessage()]
    assert "its 7 classes are taken from its distinct codes" in line and "7 -> 6 code_7" in line
    tiling = json.loads((out / "tiling.json").read_text())
    assert tiling["class_pixels"]["code_1"] == (landcover_codes() == 1).sum()


def test_landcover_categories_and_colour_table_name_and_colour_the_classes(tmp_path, scene):
    labels = write_landcover(tmp_path / "lc.tif", categories=True)
    out = tmp_path / "chips"
    tile_scene(scene, out, labels=labels, options=TilingOptions(chip_size=32))
    scheme = ClassScheme.read_json(out / "classes.json")
    assert scheme.names == LANDCOVER
    assert [c.color for c in scheme.classes] == [COLOURS[k][:3] for k in range(1, 8)]
    with rasterio.open(next((out / "labels").glob("*.tif"))) as src:  # label chips: same colours
        assert src.colormap(1)[4][:3] == COLOURS[5][:3]


def test_classes_from_labels_and_a_class_map_together_are_refused(tmp_path, scene):
    labels = write_landcover(tmp_path / "lc.tif", categories=False)
    options = TilingOptions(chip_size=32, labels=LabelOptions(classes_from_labels=True))
    cmap = ClassMap.from_dict({"mapping": {"other": [1]}})
    with pytest.raises(ConfigError, match="drop one"):
        tile_scene(scene, tmp_path / "c", labels=labels, class_map=cmap, options=options)
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------- footprints

FOOTPRINTS = [
    box(X0 + 52, Y0 - 148, X0 + 137, Y0 - 63),  # edges off the pixel grid
    shapely.Polygon([(X0 + 300, Y0 - 400), (X0 + 420, Y0 - 330), (X0 + 380, Y0 - 500)]),
]
FOOTPRINT_MAP = {
    "column": "building",
    "classes": [{"id": 0, "name": "other", "color": "#9e9e9e"},
                {"id": 1, "name": "building", "color": "#d72828"}],
    "mapping": {"building": ["yes"]},
}  # fmt: skip


def write_footprints(tmp_path: Path) -> Path:
    return make_synthetic_labels(
        tmp_path / "buildings.gpkg", [(g, "yes") for g in FOOTPRINTS], crs="EPSG:32633",
        column="building",
    )  # fmt: skip


def pixel_centres() -> np.ndarray:
    rows, cols = np.mgrid[0:64, 0:64]
    xs, ys = GRID * (cols + 0.5, rows + 0.5)
    return shapely.points(xs, ys)


def test_footprints_with_background_unlabelled_label_the_background(tmp_path):
    scene = make_synthetic_scene(
        tmp_path / "s.tif", shape=(64, 64), count=3, fill="random", nodata=0
    )
    with rasterio.open(scene, "r+") as dst:  # a nodata corner: outside the valid area
        dst.write(np.zeros((3, 8, 8), np.uint16), window=rasterio.windows.Window(56, 56, 8, 8))
    out = tmp_path / "chips"
    options = TilingOptions(chip_size=32, labels=LabelOptions(background="unlabelled"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelWarning)  # two classes labelled: no warning
        tile_scene(scene, out, labels=write_footprints(tmp_path),
                   class_map=ClassMap.from_dict(FOOTPRINT_MAP), options=options)  # fmt: skip
    with rasterio.open(scene) as src:
        valid = (src.read() != 0).all(axis=0)
    inside = shapely.contains(shapely.union_all(FOOTPRINTS), pixel_centres())
    expected = np.where(inside, 1, 0).astype(np.uint8)
    expected[~valid] = 255
    assert not valid[56:, 56:].any() and inside.sum() > 100
    np.testing.assert_array_equal(mosaic(out), expected)


def test_the_ignore_ring_around_footprints_is_exact(tmp_path, scene):
    buffer_m = 15.0
    out = tmp_path / "chips"
    options = TilingOptions(
        chip_size=32, labels=LabelOptions(background="unlabelled", ignore_buffer_m=buffer_m)
    )
    tile_scene(scene, out, labels=write_footprints(tmp_path),
               class_map=ClassMap.from_dict(FOOTPRINT_MAP), options=options)  # fmt: skip
    mask = mosaic(out)
    union = shapely.union_all(FOOTPRINTS)
    distance = shapely.distance(union, pixel_centres())
    inside = distance == 0
    # Pixel-centre rule: a centre within the buffer distance (and in no footprint) is ignored;
    # centres within 0.1 % of the distance from the ring's edge are left out of the check
    # (the buffer's arcs are polygons of 32 segments a quarter).
    near = ~inside & (distance < buffer_m * 0.999)
    far = distance > buffer_m * 1.001
    assert (mask[inside] == 1).all() and (mask[near] == 255).all() and (mask[far] == 0).all()
    assert near.sum() > 100 and far.sum() > 1000


def test_footprints_alone_warn_and_flag_the_score_a_poor_model_gets(tmp_path, scene):
    cmap = ClassMap.from_dict(FOOTPRINT_MAP)
    labels = write_footprints(tmp_path)
    # One worker thread: libraries' warnings.catch_warnings() is not thread-safe, and racing
    # worker threads can leave the process's warning filters changed (pytest's with them).
    options = TilingOptions(chip_size=16, split_fractions=(1.0, 0.0, 0.0), workers=1)
    with pytest.warns(LabelWarning, match="only class 'building' is labelled in the chips"):
        tile_scene(scene, tmp_path / "ignore", labels=labels, class_map=cmap, options=options)
    unlabelled = TilingOptions(
        chip_size=16, split_fractions=(1.0, 0.0, 0.0), labels=LabelOptions(background="unlabelled")
    )
    tile_scene(scene, tmp_path / "bg", labels=labels, class_map=cmap, options=unlabelled)
    # A deliberately poor model: "building" everywhere.
    poor = write_class_raster(tmp_path / "poor.tif", np.ones((64, 64), np.uint8),
                              scheme=cmap.scheme)  # fmt: skip
    scores = {}
    for name in ("ignore", "bg"):
        reference = write_split_labels(tmp_path / name, "train", tmp_path / f"ref_{name}.tif")
        scores[name] = evaluate_prediction(poor, reference, object_classes=[])
    # Without background only positives are judged: a perfect, meaningless score, flagged.
    assert scores["ignore"]["mean"]["iou"] == 1.0 and scores["ignore"]["warnings"]
    assert scores["ignore"]["absent_classes"] == ["other"]
    # With background the same model is found out.
    assert scores["bg"]["per_class"]["other"]["support"] > 0
    assert scores["bg"]["mean"]["iou"] < 0.5 and not scores["bg"]["warnings"]
    assert scores["bg"]["absent_classes"] == []


def test_background_options_are_checked(tmp_path, scene):
    with pytest.raises(ConfigError, match="needs background: unlabelled"):
        LabelOptions(ignore_buffer_m=5)
    labels = write_landcover(tmp_path / "lc.tif", categories=False)
    options = TilingOptions(chip_size=32, labels=LabelOptions(background="unlabelled"))
    with pytest.raises(ConfigError, match="applies to polygon labels"):
        tile_scene(scene, tmp_path / "c", labels=labels, options=options)
    options = TilingOptions(
        chip_size=32, labels=LabelOptions(background="unlabelled", background_class="grass")
    )
    with pytest.raises(ConfigError, match=r"'grass' is not a class; the classes are \['other'"):
        tile_scene(scene, tmp_path / "c", labels=write_footprints(tmp_path),
                   class_map=ClassMap.from_dict(FOOTPRINT_MAP), options=options)  # fmt: skip


def test_a_raster_attribute_table_names_the_classes(tmp_path, scene):
    labels = write_landcover(tmp_path / "lc.tif", categories=False)
    rows = "".join(
        f'<Row index="{i}"><F>{code}</F><F>{100 * code}</F><F>{name}</F></Row>'
        for i, (code, name) in enumerate(zip(range(1, 8), LANDCOVER, strict=True))
    )
    (tmp_path / "lc.tif.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><GDALRasterAttributeTable>'
        '<FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>0</Usage></FieldDefn>'
        '<FieldDefn index="1"><Name>Count</Name><Type>0</Type><Usage>1</Usage></FieldDefn>'
        '<FieldDefn index="2"><Name>Class_Name</Name><Type>2</Type><Usage>0</Usage></FieldDefn>'
        f"{rows}</GDALRasterAttributeTable></PAMRasterBand></PAMDataset>"
    )
    out = tmp_path / "chips"
    tile_scene(scene, out, labels=labels, options=TilingOptions(chip_size=32))
    assert ClassScheme.read_json(out / "classes.json").names == LANDCOVER
    expected = np.where(landcover_codes() == 0, 255, landcover_codes() - 1).astype(np.uint8)
    np.testing.assert_array_equal(mosaic(out), expected)


def test_an_ignore_ring_in_metres_needs_a_projected_scene(tmp_path, geographic_scene):
    labels = make_synthetic_labels(
        tmp_path / "b.gpkg", [(box(13.001, 52.49, 13.005, 52.495), "yes")], crs="EPSG:4326",
        column="building",
    )  # fmt: skip
    options = TilingOptions(
        chip_size=64, labels=LabelOptions(background="unlabelled", ignore_buffer_m=2)
    )
    with pytest.raises(ConfigError, match=r"ignore_buffer_m is in metres, but the scene"):
        tile_scene(geographic_scene, tmp_path / "c", labels=labels,
                   class_map=ClassMap.from_dict(FOOTPRINT_MAP), options=options)  # fmt: skip
    assert not (tmp_path / "c").exists()


def test_a_geounet_class_raster_brings_its_scheme(tmp_path, scene):
    # A classes.tif of `geounet predict` as labels: its values are ids of the scheme it holds.
    scheme = ClassScheme.from_dict({"classes": [
        {"id": 0, "name": "bare", "color": "#aaaaaa"}, {"id": 1, "name": "roof", "color": "#ff0000"},
    ]})  # fmt: skip
    data = np.zeros((64, 64), np.uint8)
    data[:, 40:] = 1
    data[:8, :8] = 255
    labels = write_class_raster(tmp_path / "classes.tif", data, transform=GRID, scheme=scheme)
    out = tmp_path / "chips"
    tile_scene(scene, out, labels=labels, options=TilingOptions(chip_size=32))
    assert ClassScheme.read_json(out / "classes.json") == scheme
    np.testing.assert_array_equal(mosaic(out), data)
