"""Tests for `geounet evaluate` (the click command; tests/test_evaluate.py has the metrics)."""

from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner

from geounet.classes import SCHEME_TAG, ClassScheme
from geounet.cli.evaluate import evaluate

# The pixel test of tests/test_evaluate.py (hand-counted confusion matrix there); 255 = ignore.
X0, Y0, X = 500000.0, 5800000.0, 255
GRID = Affine(10, 0, X0, 0, -10, Y0)
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


def cell_box(row0, col0, row1, col1):
    return shapely.box(X0 + 10 * col0, Y0 - 10 * row1, X0 + 10 * col1, Y0 - 10 * row0)


def write_classes(path, data):
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=GRID,
        nodata=255,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(**{SCHEME_TAG: json.dumps(ClassScheme.default().to_dict())})
    return str(path)


def test_help_lists_every_option_with_default():
    result = CliRunner().invoke(evaluate, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in [
        "--reference",
        "--class-map",
        "--class-column",
        "--object-classes",
        "--iou-threshold",
        "--min-area-m2",
        "--out",
    ]:
        assert flag in result.output
    assert "[default: 0.5;" in result.output and "[default: building,field" in result.output


def test_command_module_is_light():
    code = (
        "import sys; import geounet.cli.evaluate; "
        "assert not {'torch', 'geopandas', 'geounet.evaluate'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_evaluate_prints_the_table_and_writes_json(tmp_path):
    pred = write_classes(tmp_path / "classes.tif", PRED)
    ref = write_classes(tmp_path / "ref.tif", REF)
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(evaluate, [pred, "--reference", ref, "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["class", "IoU", "F1", "prec.", "recall", "support"]
    assert lines[1].split() == ["other", "0.625", "0.769", "0.714", "0.833", "12"]  # 10/16 ...
    assert "overall accuracy 0.825 over 40 pixels (8 excluded)" in result.output
    assert "building" in result.output and "objects (IoU >= 0.5)" in result.output
    metrics = json.loads(out.read_text())
    assert metrics["confusion_matrix"]["matrix"] == [
        [10, 2, 0, 0],
        [2, 14, 0, 0],
        [2, 0, 6, 0],
        [0, 1, 0, 3],
    ]
    assert set(metrics["objects"]["classes"]) == {"field", "building"}


def test_vector_reference_with_class_map_and_column(tmp_path):
    pred = write_classes(tmp_path / "classes.tif", PRED)
    ref = tmp_path / "ref.gpkg"
    gpd.GeoDataFrame(
        {"lu": ["farmland", "residential"]},
        geometry=[cell_box(0, 4, 4, 8), cell_box(4, 4, 6, 6)],
        crs="EPSG:32633",
    ).to_file(ref)
    cmap = tmp_path / "map.yaml"
    cmap.write_text("mapping:\n  field: [farmland]\n  building: [residential]\n")
    args = [
        pred,
        "--reference",
        str(ref),
        "--class-map",
        str(cmap),
        "--class-column",
        "lu",
        "--object-classes",
        "none",
        "--out",
        str(tmp_path / "m.json"),
    ]
    result = CliRunner().invoke(evaluate, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    # field polygon: 16 px, 14 predicted field and 2 other; building: 4 px, 3 right, 1 field.
    assert metrics["confusion_matrix"]["matrix"] == [[0] * 4, [2, 14, 0, 0], [0] * 4, [0, 1, 0, 3]]
    assert metrics["mean"]["classes"] == ["field", "building"]
    assert metrics["objects"] is None and "objects" not in result.output


def test_bad_input_is_a_clean_error_not_a_traceback(tmp_path):
    pred = write_classes(tmp_path / "classes.tif", PRED)
    result = CliRunner().invoke(evaluate, [pred, "--reference", str(tmp_path / "nope.tif")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output
    ref = write_classes(tmp_path / "ref.tif", REF)
    result = CliRunner().invoke(evaluate, [pred, "--reference", ref, "--object-classes", "roof"])
    assert result.exit_code == 1 and "unknown object class 'roof'" in result.output
    result = CliRunner().invoke(evaluate, [pred, "--reference", ref, "--iou-threshold", "0"])
    assert result.exit_code == 2 and "--iou-threshold" in result.output


def test_baseline_forest_is_scored_on_the_same_pixels(tmp_path):
    from _chips import make_chips

    from geounet.tiling import write_split_labels

    chips = make_chips(tmp_path)
    reference = write_split_labels(chips, "test", tmp_path / "reference_test.tif")
    prediction = reference  # a perfect model: the point is the forest beside it
    out = tmp_path / "metrics.json"
    args = [str(prediction), "--reference", str(reference), "--out", str(out)]
    refused = CliRunner().invoke(evaluate, [*args, "--baseline", "random_forest"])
    assert refused.exit_code == 2 and "needs --chips and --scene" in refused.output
    forest = ["--baseline", "random_forest", "--chips", str(chips),
              "--scene", str(tmp_path / "scene.tif")]  # fmt: skip
    result = CliRunner().invoke(evaluate, [*args, *forest])
    assert result.exit_code == 0, result.output
    assert "random forest (same pixels):" in result.output
    metrics = json.loads(out.read_text())
    rf = metrics["baseline"]
    assert rf["pixels_evaluated"] == metrics["pixels_evaluated"] > 0
    support = {n: c["support"] for n, c in metrics["per_class"].items()}
    assert support == {n: c["support"] for n, c in rf["per_class"].items()}
    assert metrics["mean"]["iou"] == 1.0 and 0.8 < rf["mean"]["iou"] <= 1.0
    with (
        rasterio.open(tmp_path / "metrics_baseline_classes.tif") as f,
        rasterio.open(tmp_path / "scene.tif") as s,
    ):
        assert (f.crs, f.transform, f.shape) == (s.crs, s.transform, s.shape)
