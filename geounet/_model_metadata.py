"""A model's metadata: everything about a trained model but its weights (no torch here).

The layout of the document (``ModelMetadata.to_dict``) is described in :mod:`geounet.modelfile`;
the safetensors file and the exported ONNX graph hold the same document, and both are read
into this one type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geounet import __version__
from geounet._nodata import nodata_rule_from_json
from geounet._normalization import Normalization
from geounet.classes import ClassScheme
from geounet.errors import ModelFileError

if TYPE_CHECKING:
    from geounet.radiometry import InputRecipe

FORMAT_VERSION = 2
"""Version of the metadata layout this geounet writes (and the newest it reads)."""


def json_ready(value: Any) -> Any:
    """Return a JSON-ready copy: tuples to lists, paths to strings, non-finite floats to None.

    Numpy and torch scalars become Python numbers. Model files and ``metrics.json`` use it, so
    they are strict JSON (no ``NaN``).
    """
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return json_ready(value.item())
    return value


@dataclass(frozen=True)
class ModelMetadata:
    """Everything about a trained model except its weights.

    Attributes:
        architecture: ``{"name", "in_channels", "num_classes", "options"}``, the arguments of
            :func:`geounet.models.create_model` (what :func:`geounet.models.describe_model`
            returns).
        bands: Band names in the order the model reads them.
        normalization: Per-band mean and standard deviation applied before the model.
        classes: The class scheme: output channel ``k`` is class ``k``.
        chip_size: Chip side (pixels) the model was trained on.
        res: Pixel size ``(x, y)`` of the training scene in its CRS units.
        crs_hint: CRS of the training scene (informational: any CRS with this pixel size works).
        nodata: The nodata override the training scene was tiled with (one value, or one per
            band; ``None``: the files' own nodata and masks). ``predict`` applies it too.
        training: Free-form summary: config, epochs, metrics, timing.
        recipe: The input recipe (:meth:`geounet.radiometry.InputRecipe.to_dict`: scale, DN
            offset, index channels); empty for the plain ``(DN - mean) / std`` of older files.
        geounet_version: Version of geounet that wrote the file.
        format_version: Layout version of this metadata.
    """

    architecture: Mapping[str, Any]
    bands: tuple[str, ...]
    normalization: Normalization
    classes: ClassScheme
    chip_size: int
    res: tuple[float, float]
    crs_hint: str | None = None
    nodata: float | tuple[float | None, ...] | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    geounet_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        missing = {"name", "in_channels", "num_classes"} - set(self.architecture)
        if missing:
            raise ModelFileError(f"architecture lacks {sorted(missing)}: {self.architecture}.")
        n_in = int(self.architecture["in_channels"])
        n_index = len(self.recipe.get("indices") or ())
        if not len(self.bands) == n_in - n_index == self.normalization.count:
            reads = (
                f"{n_in} bands" if not n_index else f"{n_in - n_index} bands (+{n_index} indices)"
            )
            raise ModelFileError(
                f"the model reads {reads} but the metadata names {len(self.bands)} bands "
                f"and has statistics for {self.normalization.count}; they must agree."
            )
        k, n_cls = int(self.architecture["num_classes"]), self.classes.num_classes
        if k != n_cls and not (k == 1 and n_cls == 2):
            raise ModelFileError(
                f"the model has {k} outputs but the class scheme {self.classes.names} has "
                f"{n_cls} classes."
            )

    def input_recipe(self) -> InputRecipe:
        """The recipe that turns scene pixels into this model's input."""
        from geounet.radiometry import InputRecipe

        return InputRecipe.from_dict(self.recipe, self.bands, self.normalization)

    @property
    def in_channels(self) -> int:
        """Number of input channels (bands, then index channels)."""
        return int(self.architecture["in_channels"])

    @property
    def num_classes(self) -> int:
        """Number of output channels."""
        return int(self.architecture["num_classes"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the layout in the module docstring)."""
        out = {
            # A recipe changes what the weights expect: readers that predate it must refuse.
            "format_version": 2 if self.recipe else 1,
            "architecture": dict(self.architecture),
            "bands": list(self.bands),
            "normalization": self.normalization.to_dict(),
            "classes": self.classes.to_dict(),
            "chip_size": self.chip_size,
            "res": list(self.res),
            "crs_hint": self.crs_hint,
            "nodata": list(self.nodata) if isinstance(self.nodata, tuple) else self.nodata,
            "training": dict(self.training),
            "geounet_version": self.geounet_version,
        }
        if self.recipe:
            out["input"] = dict(self.recipe)
        return dict(json_ready(out))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMetadata:
        """Inverse of :meth:`to_dict`.

        Raises:
            ModelFileError: If keys are missing or the format is newer than this geounet reads.
        """
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise ModelFileError(f"model metadata has no valid format_version (got {version!r}).")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"model file format {version} is newer than this geounet ({__version__}) reads "
                f"(up to {FORMAT_VERSION}); upgrade geounet."
            )
        required = ("architecture", "bands", "normalization", "classes", "chip_size", "res")
        missing = [k for k in required if k not in data]
        if missing:
            raise ModelFileError(f"model metadata lacks {missing}; it was not written by geounet.")
        try:
            return cls(
                architecture=dict(data["architecture"]),
                bands=tuple(str(b) for b in data["bands"]),
                normalization=Normalization.from_dict(data["normalization"]),
                classes=ClassScheme.from_dict(data["classes"]),
                chip_size=int(data["chip_size"]),
                res=(float(data["res"][0]), float(data["res"][1])),
                crs_hint=data.get("crs_hint"),
                nodata=nodata_rule_from_json(data.get("nodata")),
                training=dict(data.get("training") or {}),
                recipe=dict(data.get("input") or {}),
                geounet_version=str(data.get("geounet_version", "unknown")),
                format_version=version,
            )
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFileError(f"model metadata is malformed: {exc}") from exc
