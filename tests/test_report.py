"""Tests for geounet.report: the HTML/Markdown job report on a small synthetic scene."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _rasters import write_class_raster
from affine import Affine
from PIL import Image

import geounet.report as report_module
from geounet.classes import ClassInfo, ClassScheme
from geounet.errors import GridMismatchError, InputFileError, OutputError
from geounet.evaluate import metrics_from_confusion
from geounet.raster import open_scene
from geounet.report import ReportOptions, write_report
from geounet.sample_data import make_synthetic_scene

SHAPE = (60, 100)  # (height, width): wider than high, so a swapped axis shows
GRID = Affine(10, 0, 330000.0, 0, -10, 5822040.0)
SCHEME = ClassScheme.default()


def class_array() -> np.ndarray:
    """Four vertical stripes of classes 0..3 with a nodata (255) block in the top-left."""
    data = np.repeat(np.arange(4, dtype=np.uint8), SHAPE[1] // 4)[None, :].repeat(SHAPE[0], 0)
    data[:10, :10] = 255
    return data


def write_classes(path: Path, data: np.ndarray, *, transform=GRID, scheme=SCHEME) -> Path:
    """A class raster as `geounet predict` writes it: uint8, palette, scheme tag, 255 nodata."""
    return write_class_raster(path, data, transform=transform, scheme=scheme, palette=True)


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Path]:
    """Scene, classes, reference, metrics.json and a training folder, all on one grid."""
    scene = make_synthetic_scene(tmp_path / "scene.tif", shape=SHAPE, count=4, fill="random")
    classes = write_classes(tmp_path / "classes.tif", class_array())
    ref = class_array()
    ref[:, 50:] = 255  # only the left half is labelled
    reference = write_classes(tmp_path / "reference.tif", ref)
    cm = np.array([[500, 20, 0, 5], [10, 480, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    metrics = metrics_from_confusion(cm, SCHEME.names)
    metrics["objects"] = {
        "iou_threshold": 0.5,
        "min_area_m2": 0.0,
        "classes": {"building": {"n_pred": 3, "n_ref": 4, "tp": 2, "fp": 1, "fn": 2,
                                 "precision": 2 / 3, "recall": 0.5, "f1": 4 / 7,
                                 "mean_matched_iou": 0.71}},
    }  # fmt: skip
    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(metrics))
    train = tmp_path / "train"
    (train / "plots").mkdir(parents=True)
    Image.new("RGB", (30, 20), "white").save(train / "plots" / "curves.png")
    summary = {"config": {"options": {"model": "unet", "model_options": {"depth": 3},
                                      "loss": "ce+dice"}},
               "epochs": 5, "best_epoch": 3, "monitor": "val_miou",
               "val_metrics": {"miou": 0.6123, "oa": 0.8}, "fit_seconds": 12.0}  # fmt: skip
    (train / "metrics.json").write_text(json.dumps(summary))
    return {"scene": scene, "classes": classes, "reference": reference,
            "metrics": metrics_path, "train": train, "out": tmp_path / "job" / "report"}  # fmt: skip


def img_sources(text: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', text)


def test_full_report(job: dict[str, Path]) -> None:
    html_path = write_report(job["out"], scene=job["scene"], classes=job["classes"],
                             reference=job["reference"], metrics=job["metrics"],
                             train_dir=job["train"])  # fmt: skip
    out = job["out"]
    assert html_path == out / "report.html"
    html = html_path.read_text()
    md = (out / "report.md").read_text()
    metrics = json.loads(job["metrics"].read_text())
    mean_iou = f"{metrics['mean']['iou']:.3f}"
    for text in (html, md):
        for name in SCHEME.names:
            assert name in text
        assert mean_iou in text
        assert "Accuracy" in text and "Training" in text
        assert "0.612" in text  # validation mIoU of the training summary
        assert "best epoch" in text and "4 (by val" in text  # 1-based, like the curves plot
        assert "predicted objects" in text and "0.667" in text  # building object precision
        assert "EPSG:32633" in text and "100 × 60 px" in text and "10 m × 10 m" in text
    srcs = img_sources(html)
    assert set(srcs) == {"truecolour.png", "prediction.png", "reference.png", "overlay.png",
                         "legend.png", "confusion_matrix.png", "curves.png"}  # fmt: skip
    assert set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)) == set(srcs)
    for src in srcs:
        assert (out / src).is_file()
    for name in ("truecolour.png", "prediction.png", "reference.png", "overlay.png"):
        with Image.open(out / name) as png:
            assert png.size == (SHAPE[1], SHAPE[0])  # small scene: one PNG px per pixel
    assert not list(out.parent.glob(".report*"))  # no temporary folder left


def test_map_colours(job: dict[str, Path]) -> None:
    write_report(job["out"], scene=job["scene"], classes=job["classes"],
                 reference=job["reference"])  # fmt: skip
    out = job["out"]
    prediction = np.asarray(Image.open(out / "prediction.png").convert("RGBA"))
    reference = np.asarray(Image.open(out / "reference.png").convert("RGBA"))
    truecolour = np.asarray(Image.open(out / "truecolour.png").convert("RGBA"))
    overlay = np.asarray(Image.open(out / "overlay.png").convert("RGB"))
    for c in SCHEME.classes:
        col = c.id * 25 + 12
        assert tuple(prediction[30, col]) == (*c.color, 255)
    assert prediction[5, 5, 3] == 0  # nodata: transparent
    assert reference[30, 80, 3] == 0 and tuple(reference[30, 12]) == (*SCHEME.classes[0].color, 255)
    assert truecolour[..., 3].min() == 255  # the random scene has no nodata
    assert truecolour[..., :3].std() > 30  # stretched, not flat
    expected = truecolour[30, 62, :3] * 0.55 + np.array(SCHEME.classes[2].color) * 0.45
    np.testing.assert_allclose(overlay[30, 62], expected, atol=1)
    np.testing.assert_array_equal(overlay[5, 5], truecolour[5, 5, :3])  # no class: no tint


def test_without_metrics_or_training(job: dict[str, Path]) -> None:
    html_path = write_report(job["out"], scene=job["scene"], classes=job["classes"])
    html = html_path.read_text()
    assert "Accuracy" not in html and "Training" not in html
    assert not (job["out"] / "confusion_matrix.png").exists()
    assert set(img_sources(html)) == {"truecolour.png", "prediction.png", "overlay.png",
                                      "legend.png"}  # fmt: skip
    for name in SCHEME.names:
        assert name in html  # the class scheme table


def test_metrics_as_dict(job: dict[str, Path]) -> None:
    metrics = json.loads(job["metrics"].read_text())
    metrics["objects"] = None
    html = write_report(job["out"], scene=job["scene"], classes=job["classes"],
                        metrics=metrics).read_text()  # fmt: skip
    assert f"{metrics['overall_accuracy']:.3f}" in html
    assert "predicted objects" not in html


def test_large_scene_preview_is_decimated(job: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setattr(report_module, "PREVIEW_MAX_SIDE", 40)
    write_report(job["out"], scene=job["scene"], classes=job["classes"])
    for name in ("truecolour.png", "prediction.png", "overlay.png"):
        with Image.open(job["out"] / name) as png:
            assert png.size == (40, 24)  # 100 x 60 scaled by 0.4


def test_sentinel2_band_names_give_true_colour(job: dict[str, Path]) -> None:
    info = open_scene(job["scene"], bands=("B02", "B03", "B04", "B08"))
    html = write_report(job["out"], scene=info, classes=job["classes"]).read_text()
    assert "B04, B03, B02" in html
    with rasterio.open(job["scene"]) as src:
        red = src.read(3).astype(float)
    truecolour = np.asarray(Image.open(job["out"] / "truecolour.png").convert("RGB"))
    assert np.corrcoef(truecolour[..., 0].ravel(), red.ravel())[0, 1] > 0.9


def test_text_is_escaped(job: dict[str, Path], tmp_path: Path) -> None:
    scheme = ClassScheme((ClassInfo(0, "a<b>&c", (10, 20, 30)), ClassInfo(1, "d|e", (1, 2, 3))))
    classes = write_classes(tmp_path / "odd.tif", (class_array() % 2).astype(np.uint8),
                            scheme=scheme)  # fmt: skip
    html = write_report(job["out"], scene=job["scene"], classes=classes,
                        options=ReportOptions(title="<script>alert(1)</script>")).read_text()  # fmt: skip
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a&lt;b&gt;&amp;c" in html and "a<b>" not in html
    md = (job["out"] / "report.md").read_text()
    assert "d\\|e" in md and "a\\<b\\>&c" in md


def test_report_is_replaced_whole(job: dict[str, Path]) -> None:
    write_report(job["out"], scene=job["scene"], classes=job["classes"], metrics=job["metrics"])
    (job["out"] / "stale.txt").write_text("old")
    write_report(job["out"], scene=job["scene"], classes=job["classes"])
    assert not (job["out"] / "stale.txt").exists()
    assert not (job["out"] / "confusion_matrix.png").exists()
    assert sorted(p.name for p in job["out"].parent.iterdir()) == ["report"]


def test_bad_inputs(job: dict[str, Path], tmp_path: Path) -> None:
    kwargs = {"scene": job["scene"], "classes": job["classes"]}
    shifted = write_classes(tmp_path / "shifted.tif", class_array(),
                            transform=GRID * Affine.translation(1, 0))  # fmt: skip
    with pytest.raises(GridMismatchError, match="not on the grid"):
        write_report(job["out"], scene=job["scene"], classes=shifted)
    with pytest.raises(InputFileError, match="nope.tif does not exist"):
        write_report(job["out"], scene=job["scene"], classes=tmp_path / "nope.tif")
    with pytest.raises(InputFileError, match="evaluate"):
        write_report(job["out"], metrics=tmp_path / "missing.json", **kwargs)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputFileError, match="not an object"):
        write_report(job["out"], metrics=tmp_path / "list.json", **kwargs)
    with pytest.raises(InputFileError, match="training folder"):
        write_report(job["out"], train_dir=tmp_path / "no-train", **kwargs)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        write_report(tmp_path / "file", **kwargs)
    assert not job["out"].exists()


def test_the_report_names_absent_classes_and_meaningless_scores(job: dict[str, Path]) -> None:
    metrics = json.loads(job["metrics"].read_text())
    # The fixture's confusion matrix has no water or building reference pixel.
    metrics |= {"scored": "test split", "absent_classes": ["water", "building"],
                "warnings": ["only class 'other' is labelled in the reference"]}  # fmt: skip
    html = write_report(job["out"], scene=job["scene"], classes=job["classes"], metrics=metrics)
    md = (job["out"] / "report.md").read_text()
    for text in (html.read_text(), md):
        assert "Absent from the reference (test split): water, building." in text
        assert (
            "Warning: only class &#x27;other&#x27;" in text or "Warning: only class 'other'" in text
        )
