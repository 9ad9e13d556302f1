"""Any nn.Module (here torchgeo's FCN) saved as a geounet model file and predicted by the CLI."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import rasterio
import torch
from _models import BANDS
from click.testing import CliRunner

from geounet.classes import ClassScheme
from geounet.cli.main import cli
from geounet.data import Normalization
from geounet.modelfile import ModelMetadata, read_model_metadata, save_model_file
from geounet.models import MODELS, describe_model
from geounet.sample_data import make_synthetic_scene

WRAPPER = '''
from dataclasses import dataclass

from torch import nn
from torchgeo.models import FCN

from geounet.models import register_model


@dataclass(frozen=True)
class TorchgeoFCNConfig:
    num_filters: int = 8


class TorchgeoFCN(nn.Module):
    """torchgeo's FCN as a geounet model."""

    def __init__(self, in_channels, num_classes, config=TorchgeoFCNConfig()):
        super().__init__()
        self.in_channels, self.num_classes, self.config = in_channels, num_classes, config
        self.net = FCN(in_channels=in_channels, classes=num_classes, num_filters=config.num_filters)

    def forward(self, x):
        return self.net(x)


register_model("torchgeo_fcn", TorchgeoFCN, TorchgeoFCNConfig)
'''


def test_a_torchgeo_module_saved_as_a_model_file_is_predicted_from_the_cli(tmp_path, monkeypatch):
    (tmp_path / "my_tg_models.py").write_text(textwrap.dedent(WRAPPER))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import my_tg_models

        torch.manual_seed(0)
        model = my_tg_models.TorchgeoFCN(4, 4).eval()
        arch = describe_model(model)
        assert arch == {"name": "torchgeo_fcn", "in_channels": 4, "num_classes": 4,
                        "options": {"num_filters": 8}, "module": "my_tg_models"}  # fmt: skip
        meta = ModelMetadata(architecture=arch, bands=BANDS, chip_size=32, res=(10.0, 10.0),
                             normalization=Normalization((100.0,) * 4, (50.0,) * 4),
                             classes=ClassScheme.default())  # fmt: skip
        path = save_model_file(tmp_path / "fcn.safetensors", model, meta)
        assert read_model_metadata(path).architecture["module"] == "my_tg_models"
        # As in a fresh `geounet predict` process: nothing registered, the module not imported.
        del MODELS["torchgeo_fcn"], sys.modules["my_tg_models"]
        scene = make_synthetic_scene(tmp_path / "s.tif", shape=(40, 50), count=4, fill="random",
                                     crs="EPSG:32633")  # fmt: skip
        with rasterio.open(scene, "r+") as ds:
            ds.descriptions = BANDS
        res = CliRunner().invoke(cli, ["predict", str(path), str(scene), "--out",
                                       str(tmp_path / "pred"), "--device", "cpu"])  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "torchgeo_fcn" in MODELS  # registered again by importing the recorded module
        with rasterio.open(scene) as src:
            x = (src.read().astype(np.float32) - 100) / 50
        with torch.inference_mode():
            want = model(torch.from_numpy(x)[None])[0].argmax(0).numpy()
        with rasterio.open(tmp_path / "pred" / "classes.tif") as c:
            got = c.read(1)
        assert (got == want).mean() > 0.99  # blended chip borders may flip a rare tie
    finally:
        MODELS.pop("torchgeo_fcn", None)
        sys.modules.pop("my_tg_models", None)
