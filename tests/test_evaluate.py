"""Tests for geounet.evaluate: metrics checked against hand-computed numbers on tiny inputs."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pytest import approx

import geounet.evaluate as ev
from geounet.classes import SCHEME_TAG, ClassMap, ClassScheme
from geounet.errors import (
    ConfigError,
    CRSError,
    InputFileError,
    LabelError,
    OutputError,
    ReprojectionWarning,
)
from geounet.evaluate import (
    evaluate_prediction,
    match_objects,
    metrics_from_confusion,
    write_metrics,
)

X0, Y0 = 500000.0, 5800000.0
GRID = Affine(10, 0, X0, 0, -10, Y0)  # 10 m pixels in EPSG:32633
X = 255

# Reference and prediction of the pixel tests (6 x 8); 255 = ignore / nodata.
REF = np.array(
    [
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 1, 1],
        [2, 2, 2, 2, 1, 1, 1, 1],
        [2, 2, 2, 2, 3, 3, X, X],
        [X, X, 2, 2, 3, 3, X, X],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 0, 0, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 0, 0],
        [2, 2, 0, 0, 1, 1, 1, 1],
        [2, 2, 2, 2, 3, 1, 1, 1],
        [2, 2, X, X, 3, 3, 3, 3],
    ],
    dtype=np.uint8,
)
# Counted by hand, row by row (rows = reference other/field/water/building, cols = prediction).
# The 6 pixels where REF is 255 and the 2 more where PRED is 255 are excluded: 40 evaluated.
CM = [[10, 2, 0, 0], [2, 14, 0, 0], [2, 0, 6, 0], [0, 1, 0, 3]]


def write_classes(path, data, *, transform=GRID, crs="EPSG:32633", scheme=None, nodata=X, tag=True):
    """A class raster as `geounet predict` writes it (uint8, 255 nodata, scheme tag)."""
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if tag:
            dst.update_tags(**{SCHEME_TAG: json.dumps((scheme or ClassScheme.default()).to_dict())})
    return path


def cell_box(row0, col0, row1, col1):
    """The box of pixels rows row0..row1-1, cols col0..col1-1 of GRID, in metres."""
    return shapely.box(X0 + 10 * col0, Y0 - 10 * row1, X0 + 10 * col1, Y0 - 10 * row0)


def write_polygons(path, geoms, values, column="fclass", crs="EPSG:32633"):
    gpd.GeoDataFrame({column: values}, geometry=list(geoms), crs=crs).to_file(path)
    return path


def test_metrics_from_confusion_by_hand():
    names = ["a", "b", "c", "d", "e"]
    cm = np.array(
        [
            [5, 1, 0, 0, 0],  # a: support 6, predicted 8
            [0, 0, 0, 0, 0],  # b: never in the reference, predicted once
            [1, 0, 4, 0, 0],  # c: support 5, predicted 4
            [0, 0, 0, 0, 0],  # d: absent on both sides
            [2, 0, 0, 0, 0],
        ]
    )  # e: support 2, never predicted
    m = metrics_from_confusion(cm, names)
    a, b, c, d, e = (m["per_class"][n] for n in names)
    assert (a["iou"], a["precision"], a["recall"], a["f1"]) == approx(
        (5 / 9, 5 / 8, 5 / 6, 10 / 14)
    )
    assert (a["support"], a["predicted"]) == (6, 8)
    assert (b["iou"], b["precision"], b["recall"], b["f1"]) == (0.0, 0.0, None, 0.0)
    assert (c["iou"], c["precision"], c["recall"], c["f1"]) == approx((4 / 5, 1.0, 4 / 5, 8 / 9))
    assert (d["iou"], d["precision"], d["recall"], d["f1"]) == (None, None, None, None)
    assert (e["iou"], e["precision"], e["recall"], e["f1"]) == (0.0, 0.0, 0.0, 0.0)
    assert m["mean"]["classes"] == ["a", "c", "e"]  # the classes with support
    assert m["mean"]["iou"] == approx((5 / 9 + 4 / 5 + 0) / 3)
    assert m["mean"]["precision"] == approx((5 / 8 + 1 + 0) / 3)
    assert m["mean"]["recall"] == approx((5 / 6 + 4 / 5 + 0) / 3)
    assert m["mean"]["f1"] == approx((10 / 14 + 8 / 9 + 0) / 3)
    assert m["overall_accuracy"] == approx(9 / 13) and m["pixels_evaluated"] == 13
    assert m["confusion_matrix"]["matrix"] == cm.tolist()
    assert m["confusion_matrix"]["rows"] == "reference"
    assert json.loads(json.dumps(m)) == m  # JSON-ready: plain ints, floats and None
    with pytest.raises(ValueError, match="does not fit 4 class names"):
        metrics_from_confusion(cm, names[:4])
    with pytest.raises(ValueError, match="non-negative integer"):
        metrics_from_confusion(-np.eye(2, dtype=int), ["a", "b"])


def check_pixel_metrics(m):
    """The hand-computed metrics of PRED against REF (see CM)."""
    assert m["confusion_matrix"]["matrix"] == CM
    other, field, water, building = (m["per_class"][n] for n in m["classes"])
    # other: TP 10, FP 2+2, FN 2
    assert (other["iou"], other["precision"], other["recall"], other["f1"]) == approx(
        (10 / (10 + 4 + 2), 10 / 14, 10 / 12, 20 / (20 + 4 + 2))
    )
    # field: TP 14, FP 2+1, FN 2
    assert (field["iou"], field["precision"], field["recall"], field["f1"]) == approx(
        (14 / (14 + 3 + 2), 14 / 17, 14 / 16, 28 / (28 + 3 + 2))
    )
    # water: TP 6, FP 0, FN 2
    assert (water["iou"], water["precision"], water["recall"], water["f1"]) == approx(
        (6 / 8, 1.0, 6 / 8, 12 / 14)
    )
    # building: TP 3, FP 0, FN 1
    assert (building["iou"], building["precision"], building["recall"], building["f1"]) == approx(
        (3 / 4, 1.0, 3 / 4, 6 / 7)
    )
    supports = [other["support"], field["support"], water["support"], building["support"]]
    assert supports == [12, 16, 8, 4]
    assert m["overall_accuracy"] == approx(33 / 40)
    assert m["mean"]["iou"] == approx((10 / 16 + 14 / 19 + 6 / 8 + 3 / 4) / 4)
    assert m["pixels_evaluated"] == 40 and m["pixels_excluded"] == 8 and m["pixels_total"] == 48


@pytest.mark.parametrize("block_size", [1024, 3])
def test_raster_reference_on_the_same_grid(tmp_path, monkeypatch, block_size):
    monkeypatch.setattr(ev, "_BLOCK_SIZE", block_size)  # 3: blocks cut across the classes
    pred = write_classes(tmp_path / "classes.tif", PRED)
    ref = write_classes(tmp_path / "ref.tif", REF)
    m = evaluate_prediction(pred, ref, object_classes=[])
    check_pixel_metrics(m)
    assert m["reference_kind"] == "raster" and m["crs"] == "EPSG:32633" and m["objects"] is None


def test_coarser_reference_raster_covering_part_of_the_prediction(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "_BLOCK_SIZE", 4)
    pred = write_classes(tmp_path / "classes.tif", PRED)
    # 20 m pixels over the left 6 columns only, and no nodata value: resampling would fill the
    # 2 uncovered columns with 0 ("other"); they must be excluded instead.
    coarse = np.array([[0, 1, 1], [0, 1, 1], [2, 2, 3]], dtype=np.uint8)
    ref = write_classes(
        tmp_path / "ref20.tif", coarse, transform=Affine(20, 0, X0, 0, -20, Y0), nodata=None
    )
    m = evaluate_prediction(pred, ref, object_classes=[])
    # Nearest upsampling: rows 0-3 read 0 0 1 1 1 1, rows 4-5 read 2 2 2 2 3 3 (cols 0-5).
    # Counted by hand against PRED's cols 0-5 (2 PRED-255 pixels in row 5).
    assert m["confusion_matrix"]["matrix"] == [
        [6, 0, 2, 0],
        [6, 10, 0, 0],
        [0, 0, 6, 0],
        [0, 1, 0, 3],
    ]
    assert m["pixels_evaluated"] == 34 and m["pixels_excluded"] == 12 + 2
    assert m["per_class"]["field"]["recall"] == approx(10 / 16)
    assert m["per_class"]["other"]["precision"] == approx(6 / 12)


def test_reference_raster_in_another_crs_covering_part_of_the_prediction(tmp_path):
    from pyproj import Transformer

    pred = write_classes(tmp_path / "classes.tif", PRED)
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform
    west, south = to_lonlat(X0 - 100, Y0 - 160)
    east, north = to_lonlat(X0 + 40, Y0 + 100)  # x = X0 + 40: the left 4 columns are covered
    shape = (40, 30)
    transform = Affine((east - west) / shape[1], 0, west, 0, -(north - south) / shape[0], north)
    ref = write_classes(
        tmp_path / "ref4326.tif",
        np.ones(shape, np.uint8),
        transform=transform,
        crs="EPSG:4326",
        nodata=None,
    )
    with pytest.warns(ReprojectionWarning):
        m = evaluate_prediction(pred, ref, object_classes=["field"])
    # All reference pixels are "field"; PRED's left 4 columns hold 12 other, 2 field, 8 water
    # (and 2 x 255). Columns 4-7 lie outside the reference and are excluded, not "other".
    assert m["confusion_matrix"]["matrix"] == [[0] * 4, [12, 2, 8, 0], [0] * 4, [0] * 4]
    assert m["pixels_excluded"] == 24 + 2
    f = m["objects"]["classes"]["field"]
    # One reference field object (the 24 covered pixels) and one predicted field region (19
    # pixels, 4-connected from rows 0-1 cols 3-7 down to row 4) reaching into it by 2 pixels:
    # IoU 2 / 41, no match.
    assert (f["n_ref"], f["n_pred"], f["tp"]) == (1, 1, 0)


def reference_polygons():
    """REF as polygons: an L-shaped water polygon leaves REF's two 255 pixels of row 5 out."""
    water = shapely.Polygon(
        [
            (X0, Y0 - 30),
            (X0 + 40, Y0 - 30),
            (X0 + 40, Y0 - 60),
            (X0 + 20, Y0 - 60),
            (X0 + 20, Y0 - 50),
            (X0, Y0 - 50),
        ]
    )
    geoms = [
        cell_box(0, 0, 3, 4),
        cell_box(0, 4, 4, 8),
        water,
        cell_box(4, 4, 6, 6),
        cell_box(4, 6, 6, 8),
    ]
    values = ["forest", "farmland", "water", "residential", "road"]  # road: not in the map
    return geoms, values


CLASS_MAP = {
    "column": "fclass",
    "mapping": {
        "other": ["forest"],
        "field": ["farmland"],
        "water": ["water"],
        "building": ["residential"],
    },
}


def test_vector_reference_with_a_class_map(tmp_path):
    pred = write_classes(tmp_path / "classes.tif", PRED)
    ref = write_polygons(tmp_path / "ref.gpkg", *reference_polygons())
    m = evaluate_prediction(pred, ref, class_map=ClassMap.from_dict(CLASS_MAP), object_classes=[])
    check_pixel_metrics(m)
    assert m["reference_kind"] == "vector"


def test_vector_reference_in_another_crs_is_reprojected(tmp_path):
    pred = write_classes(tmp_path / "classes.tif", PRED)
    geoms, values = reference_polygons()
    frame = gpd.GeoDataFrame({"fclass": values}, geometry=geoms, crs="EPSG:32633")
    ref = tmp_path / "ref4326.gpkg"
    frame.to_crs("EPSG:4326").to_file(ref)
    with pytest.warns(ReprojectionWarning):
        m = evaluate_prediction(
            pred, ref, class_map=ClassMap.from_dict(CLASS_MAP), object_classes=[]
        )
    check_pixel_metrics(m)  # edges move by millimetres; pixel centres are 5 m away


# Object test (10 x 12, background "other"), in pixel boxes (row0, col0, row1, col1):
REF_BUILDINGS = [(1, 1, 3, 6), (5, 1, 7, 6), (1, 8, 4, 11)]  # 10, 10 and 9 pixels
PRED_BUILDINGS = [
    (1, 1, 3, 5),  # 8 px inside the first: IoU 8/10 = 0.8
    (5, 1, 6, 4),  # 3 px inside the second: IoU 3/10 = 0.3
    (8, 10, 9, 11),  # 1 px far from any: a false positive
]


def object_rasters(tmp_path):
    pred = np.zeros((10, 12), np.uint8)
    for r0, c0, r1, c1 in PRED_BUILDINGS:
        pred[r0:r1, c0:c1] = 3
    ref = np.zeros((10, 12), np.uint8)
    for r0, c0, r1, c1 in REF_BUILDINGS:
        ref[r0:r1, c0:c1] = 3
    return write_classes(tmp_path / "classes.tif", pred), write_classes(tmp_path / "ref.tif", ref)


def test_object_metrics_by_hand_vector_and_raster_reference(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "_BLOCK_SIZE", 4)  # objects are cut by blocks and joined again
    pred, ref_raster = object_rasters(tmp_path)
    # Class names as values and no class map: the default map takes ids or names.
    ref_vector = write_polygons(
        tmp_path / "buildings.gpkg",
        [cell_box(*b) for b in REF_BUILDINGS],
        ["building"] * 3,
        column="kind",
    )
    for ref, column in ((ref_vector, "kind"), (ref_raster, None)):
        m = evaluate_prediction(pred, ref, class_column=column)
        b = m["objects"]["classes"]["building"]
        # TP = 1 (IoU 0.8; 0.3 is below 0.5), 3 predicted, 3 reference.
        assert (b["tp"], b["fp"], b["fn"], b["n_pred"], b["n_ref"]) == (1, 2, 2, 3, 3)
        assert (b["precision"], b["recall"], b["f1"]) == approx((1 / 3, 1 / 3, 1 / 3))
        assert b["mean_matched_iou"] == approx(0.8)
        f = m["objects"]["classes"]["field"]  # default classes: building and field
        assert (f["n_pred"], f["n_ref"], f["tp"]) == (0, 0, 0)
        assert (f["precision"], f["recall"], f["f1"]) == (None, None, None)
    m = evaluate_prediction(pred, ref_raster, object_classes=["building"], iou_threshold=0.25)
    b = m["objects"]["classes"]["building"]
    assert (b["tp"], b["precision"], b["recall"]) == (2, approx(2 / 3), approx(2 / 3))
    assert list(m["objects"]["classes"]) == ["building"]
    # Specks below 150 m2 (the 1-pixel false positive, 100 m2) are ignored: 2 predicted.
    m = evaluate_prediction(
        pred, ref_vector, class_column="kind", object_classes=["building"], min_area_m2=150
    )
    b = m["objects"]["classes"]["building"]
    assert (b["tp"], b["n_pred"], b["n_ref"]) == (1, 2, 3)
    assert (b["precision"], b["recall"], b["f1"]) == approx((1 / 2, 1 / 3, 2 / 5))


def test_predicted_objects_outside_a_raster_reference_are_not_judged(tmp_path):
    pred, _ = object_rasters(tmp_path)
    # Reference raster covering the top 4 rows only: the second building's prediction (row 5)
    # and the false positive (row 8) lie outside it.
    ref = np.zeros((4, 12), np.uint8)
    ref[1:3, 1:6] = 3
    ref_path = write_classes(tmp_path / "top.tif", ref, nodata=None)
    b = evaluate_prediction(pred, ref_path, object_classes=["building"])["objects"]["classes"]
    assert (b["building"]["tp"], b["building"]["n_pred"], b["building"]["n_ref"]) == (1, 1, 1)


def test_ignored_reference_pixels_cut_the_predicted_objects(tmp_path):
    # A split reference: the same grid as the prediction, 255 outside the labelled split.
    pred, _ = object_rasters(tmp_path)
    ref = np.full((10, 12), 255, np.uint8)
    ref[0:4, :] = 0
    ref[1:3, 1:6] = 3
    ref_path = write_classes(tmp_path / "split.tif", ref)
    m = evaluate_prediction(pred, ref_path, object_classes=["building"])
    b = m["objects"]["classes"]["building"]
    # Only the predicted building in rows 0-3 is judged; rows 4-9 hold no false positive.
    assert (b["tp"], b["n_pred"], b["n_ref"]) == (1, 1, 1)
    assert m["pixels_evaluated"] == 4 * 12


def test_matching_is_one_to_one_and_greedy_by_iou():
    wide = shapely.box(0, 0, 4, 2)
    halves = [shapely.box(0, 0, 2, 2), shapely.box(2, 0, 4, 2)]
    assert len(match_objects([wide], halves, iou_threshold=0.5)) == 1  # IoU 0.5 each, one match
    ref = [shapely.box(0, 0, 2, 2)]
    larger, exact = shapely.box(0, 0, 2, 2.2), shapely.box(0, 0, 2, 2)
    assert match_objects([larger, exact], ref) == [(1, 0, 1.0)]  # IoU 1 beats 4/4.4
    assert match_objects([], ref) == [] and match_objects([exact], []) == []
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        match_objects([exact], ref, iou_threshold=0)


def test_scheme_from_the_tag_and_null_for_absent_classes(tmp_path):
    scheme = ClassScheme.from_records(
        [*ClassScheme.default().to_records(), {"id": 4, "name": "road", "color": "#000000"}]
    )
    pred = write_classes(tmp_path / "classes.tif", PRED, scheme=scheme)
    ref = write_classes(tmp_path / "ref.tif", REF, tag=False)
    m = evaluate_prediction(pred, ref, object_classes=[])
    assert m["classes"] == ["other", "field", "water", "building", "road"]
    assert m["per_class"]["road"] == {
        "iou": None,
        "f1": None,
        "precision": None,
        "recall": None,
        "support": 0,
        "predicted": 0,
    }
    assert m["mean"]["classes"] == ["other", "field", "water", "building"]
    assert m["overall_accuracy"] == approx(33 / 40)
    out = write_metrics(m, tmp_path / "metrics.json")
    text = out.read_text()
    assert '"iou": null' in text and json.loads(text)["confusion_matrix"]["matrix"][4] == [0] * 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    untagged = write_classes(tmp_path / "untagged.tif", PRED, tag=False)
    m = evaluate_prediction(untagged, ref, object_classes=[])
    assert m["classes"] == ClassScheme.default().names


def test_errors_say_what_is_wrong(tmp_path):
    pred = write_classes(tmp_path / "classes.tif", PRED)
    ref = write_classes(tmp_path / "ref.tif", REF)
    with pytest.raises(InputFileError, match="prediction .*nope.tif does not exist"):
        evaluate_prediction(tmp_path / "nope.tif", ref)
    with pytest.raises(InputFileError, match="reference .*nope.gpkg does not exist"):
        evaluate_prediction(pred, tmp_path / "nope.gpkg")
    far = write_polygons(tmp_path / "far.gpkg", [shapely.box(0, 0, 10, 10)], ["building"])
    with pytest.raises(LabelError, match="intersects the scene"):
        evaluate_prediction(pred, far, class_column="fclass")
    empty = write_classes(tmp_path / "empty.tif", np.full_like(REF, X))
    with pytest.raises(LabelError, match="no pixel .* has both"):
        evaluate_prediction(pred, empty)
    bare = tmp_path / "bare.tif"
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        profile = dict(driver="GTiff", width=8, height=6, count=1, dtype="uint8")
        with rasterio.open(bare, "w", **profile) as d:
            d.write(PRED, 1)
        with pytest.raises(CRSError, match="no CRS"):
            evaluate_prediction(bare, ref)
    with pytest.raises(ConfigError, match="Did you mean 'building'"):
        evaluate_prediction(pred, ref, object_classes=["buildings"])
    with pytest.raises(ConfigError, match="iou_threshold"):
        evaluate_prediction(pred, ref, iou_threshold=0)
    other_scheme = ClassMap.from_dict({"classes": [{"id": 0, "name": "x", "color": "#000000"}]})
    with pytest.raises(LabelError, match="differ from the prediction's"):
        evaluate_prediction(pred, ref, class_map=other_scheme)
    wrong = write_classes(tmp_path / "u16.tif", PRED.astype(np.uint16))
    with pytest.raises(InputFileError, match="expected one uint8 band"):
        evaluate_prediction(wrong, ref)
    with pytest.raises(OutputError, match="does not exist"):
        write_metrics({}, tmp_path / "missing" / "m.json")
