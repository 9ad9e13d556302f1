"""Reference classes the prediction lacks (an error, or explicitly missed) and read-only outputs."""

from __future__ import annotations

import os
import subprocess

import geopandas as gpd
import numpy as np
import pytest
import shapely
from _rasters import UTM_GRID, write_class_raster
from click.testing import CliRunner

from geounet.classes import ClassScheme
from geounet.cli.evaluate import evaluate
from geounet.errors import OutputError, ReferenceClassError
from geounet.evaluate import check_output_path, evaluate_prediction

# 4 x 6 pixels: the prediction knows 0..3 (the default scheme); the reference's right two
# columns hold class 4, "road" in its own five-class scheme.
PRED = np.array([[0, 0, 1, 1, 2, 2]] * 4, dtype=np.uint8)
REF = np.array([[0, 0, 1, 1, 4, 4]] * 4, dtype=np.uint8)
FIVE = ClassScheme.from_records(
    [*ClassScheme.default().to_records(), {"id": 4, "name": "road", "color": "#000000"}]
)


@pytest.fixture
def files(tmp_path):
    pred = write_class_raster(tmp_path / "classes.tif", PRED)
    ref = write_class_raster(tmp_path / "reference.tif", REF, scheme=FIVE)
    return pred, ref


def test_a_reference_class_the_prediction_lacks_is_an_error_naming_it_and_both_files(files):
    pred, ref = files
    with pytest.raises(ReferenceClassError) as err:
        evaluate_prediction(pred, ref, object_classes=[])
    message = str(err.value)
    assert "'road' (value 4) (8 px)" in message
    assert str(pred) in message and str(ref) in message
    assert "--class-map" in message and "--unknown-classes miss" in message


def test_counted_as_a_miss_the_class_is_scored_and_never_predicted(files):
    pred, ref = files
    metrics = evaluate_prediction(pred, ref, object_classes=[], unknown_classes="miss")
    assert metrics["classes"] == ["other", "field", "water", "building", "road"]
    road = metrics["per_class"]["road"]
    assert road["support"] == 8 and road["predicted"] == 0
    assert road["recall"] == 0.0 and road["iou"] == 0.0
    # 16 of 24 pixels right; the road pixels predicted as water are water's false positives.
    assert metrics["overall_accuracy"] == pytest.approx(16 / 24)
    assert metrics["per_class"]["water"]["precision"] == 0.0
    assert metrics["mean"]["classes"] == ["other", "field", "road"]
    assert metrics["mean"]["iou"] == pytest.approx((1 + 1 + 0) / 3)


def test_raster_values_without_a_scheme_are_named_by_value(tmp_path):
    pred = write_class_raster(tmp_path / "classes.tif", PRED)
    ref = tmp_path / "plain.tif"
    subprocess.run(  # the same reference without a GEOUNET_CLASSES tag
        ["gdal_translate", "-q", "-mo", "GEOUNET_CLASSES=", str(
            write_class_raster(tmp_path / "tagged.tif", REF)), str(ref)],
        check=True,
    )  # fmt: skip
    with pytest.raises(ReferenceClassError, match=r"value 4 \(8 px\)"):
        evaluate_prediction(pred, ref, object_classes=[])


def test_a_polygon_value_that_is_no_class_is_an_error_or_a_miss(tmp_path):
    pred = write_class_raster(tmp_path / "classes.tif", PRED)
    x0, y0 = UTM_GRID.c, UTM_GRID.f
    frame = gpd.GeoDataFrame(
        {"cls": ["field", "road"]},
        geometry=[
            shapely.box(x0 + 20, y0 - 40, x0 + 40, y0),  # columns 2-3: field
            shapely.box(x0 + 40, y0 - 40, x0 + 60, y0),  # columns 4-5: road
        ],
        crs="EPSG:32633",
    )
    ref = tmp_path / "reference.gpkg"
    frame.to_file(ref)
    with pytest.raises(ReferenceClassError, match=r"'road' \(8 px\)"):
        evaluate_prediction(pred, ref, class_column="cls", object_classes=[])
    metrics = evaluate_prediction(
        pred, ref, class_column="cls", object_classes=[], unknown_classes="miss"
    )
    assert metrics["per_class"]["road"]["support"] == 8
    assert metrics["per_class"]["field"]["iou"] == 1.0
    assert metrics["overall_accuracy"] == pytest.approx(8 / 16)


def test_a_known_class_outside_the_compared_ground_is_no_problem(tmp_path):
    pred = write_class_raster(tmp_path / "classes.tif", PRED)
    ref = write_class_raster(tmp_path / "reference.tif", np.where(REF == 4, 2, REF), scheme=FIVE)
    metrics = evaluate_prediction(pred, ref, object_classes=[])
    assert metrics["classes"] == ClassScheme.default().names
    assert metrics["overall_accuracy"] == 1.0


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no file can be created in: a read-only tmpfs as root (mode bits do not bind
    root), a mode-0555 folder otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_an_unwritable_output_is_refused_before_anything_is_computed(files, read_only_dir):
    pred, ref = files
    out = read_only_dir / "metrics.json"
    with pytest.raises(OutputError, match="Read-only file system|Permission denied"):
        check_output_path(out)
    result = CliRunner().invoke(
        evaluate, [str(pred), "--reference", str(ref), "--unknown-classes", "miss",
                   "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"cannot write {out}" in result.output and "Traceback" not in result.output
    # Nothing was computed: the metrics table is printed before the file would be written.
    assert "overall accuracy" not in result.output
    missing = CliRunner().invoke(
        evaluate, [str(pred), "--reference", str(ref), "--out", str(out.parent / "no" / "m.json")]
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output
