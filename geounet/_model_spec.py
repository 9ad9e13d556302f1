"""What prediction needs to know about a model (no torch: the onnx engine builds one too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from geounet._model_metadata import ModelMetadata
from geounet.classes import ClassScheme


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
    def from_metadata(cls, metadata: ModelMetadata | Mapping[str, Any]) -> ModelSpec:
        """From a model file's metadata, typed; a document (an ONNX graph's) is parsed first.

        A document is read into :class:`~geounet._model_metadata.ModelMetadata`, so there is
        one parser and one std = 0 rule (:attr:`Normalization.divisor`).

        Raises:
            ModelFileError: A document that is not a model's metadata.
        """
        meta = (
            metadata if isinstance(metadata, ModelMetadata) else ModelMetadata.from_dict(metadata)
        )
        norm = meta.normalization
        return cls(
            bands=tuple(meta.bands),
            mean=np.asarray(norm.mean, dtype=np.float32),
            std=norm.divisor,  # a constant band (std 0) is divided by 1, as in training
            scheme=meta.classes,
            chip_size=int(meta.chip_size or 256),
            nodata=meta.nodata,
            res=tuple(meta.res) if meta.res else None,  # type: ignore[arg-type]
            crs=meta.crs_hint,
            recipe=meta.input_recipe() if meta.recipe else None,
        )
