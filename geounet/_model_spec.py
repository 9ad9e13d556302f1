"""What prediction needs to know about a model (no torch: the onnx engine builds one too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from geounet._nodata import nodata_rule_from_json
from geounet.classes import ClassScheme
from geounet.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """What prediction needs to know about a model: bands, normalisation, classes, pixel size.

    ``res`` and ``crs`` (the training pixel size and CRS) are ``None`` when unknown; the
    resolution check is then skipped. ``recipe`` is the model file's input recipe
    (:class:`geounet.radiometry.InputRecipe`; ``None``: plain ``(DN - mean) / std``) and
    ``scene_offset`` the DN offset of the scene being predicted.
    """

    bands: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    scheme: ClassScheme
    chip_size: int = 256
    nodata: float | tuple[float | None, ...] | None = None
    res: tuple[float, float] | None = None
    crs: str | None = None
    recipe: Any = None
    scene_offset: float | None = None

    @classmethod
    def from_metadata(cls, metadata: Any) -> ModelSpec:
        """From a model file's metadata (an object with ``to_dict()`` or its dict form)."""
        data: Mapping[str, Any] = metadata.to_dict() if hasattr(metadata, "to_dict") else metadata
        try:
            norm = data["normalization"]
            return cls(
                bands=tuple(data["bands"]),
                mean=np.asarray(norm["mean"], dtype=np.float32),
                # A constant band (std 0) is divided by 1, as in training (data.Normalization).
                std=np.where(np.asarray(norm["std"]) == 0, 1.0, norm["std"]).astype(np.float32),
                scheme=ClassScheme.from_dict(data["classes"]),
                chip_size=int(data.get("chip_size") or 256),
                nodata=nodata_rule_from_json(data.get("nodata")),
                res=tuple(data["res"]) if data.get("res") else None,  # type: ignore[arg-type]
                crs=data.get("crs_hint"),
                recipe=_recipe(data),
            )
        except KeyError as exc:
            raise ConfigError(
                f"model metadata lacks {exc}; it needs bands, normalization (mean, std) "
                "and classes."
            ) from exc


def _recipe(data: Mapping[str, Any]) -> Any:
    """The metadata's input recipe, or ``None`` for the plain normalisation of older files."""
    if not data.get("input"):
        return None
    from geounet.data import Normalization  # noqa: PLC0415
    from geounet.radiometry import InputRecipe  # noqa: PLC0415

    norm = Normalization.from_dict(data["normalization"])
    return InputRecipe.from_dict(data["input"], data["bands"], norm)
