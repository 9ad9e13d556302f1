"""The STAC item links the scene it was derived from and describes the model (MLM extension)."""

from __future__ import annotations

import json

import pystac
import rasterio
from _models import BANDS, make_model_file

from geounet.inference import predict_scene
from geounet.sample_data import make_synthetic_scene
from geounet.stac import MLM_EXTENSION, STAC_EXTENSIONS, ItemAssets, write_stac_item


def test_item_links_its_scene_and_describes_its_model(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=32)
    scene = make_synthetic_scene(tmp_path / "scene.tif", shape=(40, 40), count=4, crs="EPSG:32633")
    with rasterio.open(scene, "r+") as ds:
        ds.descriptions = BANDS
    result = predict_scene(str(model), str(scene), tmp_path / "pred", device="cpu")
    remote = "/vsicurl/https://example.org/items/S2B_33UUU.json"
    path = write_stac_item(tmp_path / "item.json", item_id="x", assets=ItemAssets(
        result.classes, model=model, scene=(str(scene), remote)))  # fmt: skip
    data = json.loads(path.read_text())
    assert data["links"] == [
        {"rel": "derived_from", "href": "./scene.tif", "type": "image/tiff; application=geotiff"},
        {"rel": "derived_from", "href": "https://example.org/items/S2B_33UUU.json",
         "type": "application/geo+json"},
    ]  # fmt: skip
    assert data["stac_extensions"] == [*STAC_EXTENSIONS, MLM_EXTENSION]
    asset = data["assets"]["model"]
    assert asset["roles"][0] == "mlm:model" and asset["mlm:architecture"] == "unet"
    (inp,) = asset["mlm:input"]
    assert inp["bands"] == list(BANDS) and inp["input"]["shape"] == [-1, 4, 32, 32]
    assert inp["value_scaling"][0] == {"type": "z-score", "mean": 3000.0, "stddev": 2000.0}
    (out,) = asset["mlm:output"]
    assert [c["name"] for c in out["classification:classes"]] == [
        "other",
        "field",
        "water",
        "building",
    ]
    item = pystac.Item.from_file(str(path))  # pystac reads it back, links and all
    assert [link.rel for link in item.links if link.rel == "derived_from"] == ["derived_from"] * 2
