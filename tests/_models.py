"""A tiny model file (4 bands, 4 classes) for prediction tests."""

from __future__ import annotations

from pathlib import Path

import torch

from geounet.classes import ClassScheme
from geounet.data import Normalization
from geounet.modelfile import ModelMetadata, save_model_file
from geounet.models import create_model, describe_model

BANDS = ("B02", "B03", "B04", "B08")


def make_model_file(tmp_path: Path, *, chip_size: int = 64) -> tuple[Path, torch.nn.Module]:
    """A seeded 2-level U-Net saved as ``tmp_path/model.safetensors``, and the module itself."""
    torch.manual_seed(0)
    model = create_model("unet", in_channels=4, num_classes=4, depth=2, base_channels=4).eval()
    meta = ModelMetadata(
        architecture=describe_model(model), bands=BANDS,
        normalization=Normalization((3000.0,) * 4, (2000.0,) * 4), classes=ClassScheme.default(),
        chip_size=chip_size, res=(10.0, 10.0),
    )  # fmt: skip
    return save_model_file(tmp_path / "model.safetensors", model, meta), model
