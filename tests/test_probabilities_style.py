"""probabilities.tif says what its values are (GDAL scale 1/255, band names, nodata as its
mask), probabilities.qml shows one class as a ramp in the real QGIS, and STAC agrees."""

from __future__ import annotations

import json

import numpy as np
import rasterio
import torch
from _models import BANDS

from geounet.classes import ClassScheme
from geounet.inference import ModelSpec, predict_scene
from geounet.sample_data import make_synthetic_scene
from geounet.stac import ItemAssets, write_stac_item

SPEC = ModelSpec(BANDS, np.full(4, 100.0, np.float32), np.full(4, 50.0, np.float32),
                 ClassScheme.default(), 48)  # fmt: skip


def _predict(tmp_path):
    scene = make_synthetic_scene(tmp_path / "scene.tif", shape=(96, 128), count=4,
                                 fill="random", crs="EPSG:32633", nodata=0)  # fmt: skip
    with rasterio.open(scene, "r+") as ds:
        ds.descriptions = BANDS
    torch.manual_seed(0)
    return predict_scene(torch.nn.Conv2d(4, 4, 1), str(scene), tmp_path / "pred", metadata=SPEC,
                         probabilities=True)  # fmt: skip


def test_probabilities_declare_scale_names_and_nodata_and_stac_agrees(tmp_path):
    result = _predict(tmp_path)
    with rasterio.open(result.probabilities) as src:
        assert src.scales == (1 / 255,) * 4 and src.offsets == (0.0,) * 4
        assert src.descriptions == ("p_other", "p_field", "p_water", "p_building")
        # Every value 0-255 is a probability, so nodata is the internal (per-dataset) mask.
        assert all(rasterio.enums.MaskFlags.per_dataset in f for f in src.mask_flag_enums)
        assert (src.dataset_mask() == 0).any() and (src.dataset_mask() == 255).any()
        scales = src.scales
    qml = (tmp_path / "pred" / "probabilities.qml").read_text()
    assert 'type="singlebandpseudocolor" band="2"' in qml and "class 'field'" in qml
    item = write_stac_item(tmp_path / "pred" / "item.json", item_id="x",
                           assets=ItemAssets(result.classes, probabilities=result.probabilities))  # fmt: skip
    bands = json.loads(item.read_text())["assets"]["probabilities"]["raster:bands"]
    assert [b["scale"] for b in bands] == list(scales)
    assert all(b["offset"] == 0 for b in bands)


def test_probabilities_show_one_class_as_a_ramp_in_qgis(tmp_path, qgis_check):
    result = _predict(tmp_path)
    run = qgis_check(
        result.probabilities, "--require-cog", "--json", "--render", tmp_path / "r.png"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (layer,) = json.loads(run.stdout)["inputs"][0]["layers"]
    assert layer["renderer"] == "singlebandpseudocolor"  # not RGB of the first three classes
    assert layer["style"]["sidecar_qml_exists"] and layer["style"]["default_style_applied"]
    assert layer["pseudocolor"] == {"band": 2, "ramp_items": 5, "min": 0, "max": 1}
    names = [b["name"] for b in layer["bands"]]
    assert names[:4] == [
        "Band 1: p_other",
        "Band 2: p_field",
        "Band 3: p_water",
        "Band 4: p_building",
    ]
    # QGIS applies the scale: the ramp's 0-1 are the probabilities it reads.
    stats = layer["bands"][1]["stats_sampled"]
    assert 0 <= stats["min"] <= stats["max"] <= 1 and stats["max"] > 0
