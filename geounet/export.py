"""Export a model file to ONNX: raw band values in, softmax probabilities out, self-describing.

The exported graph wraps the network so that it needs nothing but onnxruntime:

* **Input** ``input``: float32 ``(N, C, H, W)`` of *raw* band values (e.g. Sentinel-2 uint16
  reflectances), ``C`` static, ``N``, ``H`` and ``W`` dynamic. A pixel with NaN in any band is
  nodata: the graph sets it to 0 after normalising, exactly as ``geounet predict`` does with the
  torch engine.
* Inside: ``(x - mean) / std`` with the model file's statistics (std 0 -> 1, as in training),
  the U-Net, then softmax (a one-logit binary model gives ``[1 - p, p]``).
* **Output** ``probabilities``: float32 ``(N, K, H, W)``.
* ``opset_import`` 17 and IR version 8 (at most 17 and 9: QGIS plugins bundle onnxruntime
  1.12-1.17).
* ``metadata_props``, each value a JSON string, as the Deepness QGIS plugin reads them:
  ``model_type`` ``"Segmentor"``, ``class_names`` ``{"0": name, ...}``, ``resolution`` (cm per
  pixel), ``tile_size`` and ``tiles_size`` (Deepness's code reads the first, its docs name the
  second), ``tiles_overlap`` (percent), ``standardization_mean`` 0 and ``standardization_std``
  1/255 per band (Deepness divides its input by 255 first; this undoes it, since the
  normalisation is in the graph), ``seg_thresh``, ``seg_small_segment``; and under ``geounet``
  the model file's whole metadata (bands, normalisation, classes and colours, chip size, pixel
  size) plus an ``onnx`` entry describing the input, so the ONNX file is as self-describing as
  the model file and ``geounet predict model.onnx`` checks bands and writes named classes.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geounet.engines import ONNX_METADATA_KEY
from geounet.errors import ConfigError, ModelFileError, OutputError
from geounet.inference import ModelSpec
from geounet.modelfile import load_model_file
from geounet.radiometry import INDEX_FORMULAS

log = logging.getLogger(__name__)

MAX_OPSET = 17
"""Newest opset the onnxruntime of QGIS plugins (1.12-1.17) is sure to run."""

MAX_IR_VERSION = 9
"""Newest ONNX IR version onnxruntime 1.17 reads (1.12 reads 8, which the exporter writes)."""

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class OnnxExportOptions:
    """Settings of :func:`export_onnx` that end up in the file's Deepness metadata.

    Attributes:
        opset: ONNX opset, 11 to :data:`MAX_OPSET`.
        tiles_overlap: Overlap of neighbouring tiles in percent that Deepness proposes
            (geounet predict's default is a quarter of the chip: 25).
        seg_thresh: Probability below which Deepness leaves a pixel unclassified.
        seg_small_segment: Deepness removes segments smaller than this many pixels (0: none).
    """

    opset: int = MAX_OPSET
    tiles_overlap: int = 25
    seg_thresh: float = 0.5
    seg_small_segment: int = 0

    def __post_init__(self) -> None:
        if not 11 <= self.opset <= MAX_OPSET:
            raise ConfigError(
                f"opset must be in [11, {MAX_OPSET}] (QGIS plugins bundle onnxruntime "
                f"1.12-1.17), got {self.opset}."
            )
        if not 0 <= self.tiles_overlap < 100:
            raise ConfigError(
                f"tiles_overlap is a percentage in [0, 100), got {self.tiles_overlap}."
            )
        if not 0.0 <= self.seg_thresh <= 1.0:
            raise ConfigError(f"seg_thresh is a probability in [0, 1], got {self.seg_thresh}.")
        if self.seg_small_segment < 0:
            raise ConfigError(f"seg_small_segment must be >= 0, got {self.seg_small_segment}.")


class RawInputModel(nn.Module):
    """A network that takes raw band values: normalisation, nodata mask and softmax inside.

    Args:
        model: Maps normalised ``(N, C, H, W)`` to logits ``(N, K, H, W)``.
        spec: Its bands, normalisation and classes.
    """

    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.model = model
        recipe = spec.recipe
        # A model file's input recipe (harmonising offset, scale, index channels) is the same
        # arithmetic as InputRecipe.apply, so the graph takes raw DN like the model file does.
        if recipe is not None and recipe.normalize == "scene":
            raise ConfigError(
                "this model normalises each scene with its own band statistics (normalize: "
                "scene), which a fixed ONNX graph cannot; retrain with normalize: training to "
                "export it."
            )
        if recipe is not None:
            norm = recipe.band_normalization
            mean, std = np.asarray(norm.mean, np.float32), norm.divisor
            offset, scale = float(recipe.offset), float(recipe.scale)
            pairs = [
                [recipe.bands.index(recipe.index_bands[role]) for role in INDEX_FORMULAS[name]]
                for name in recipe.indices
            ]
        else:
            mean, std, offset, scale, pairs = spec.mean, spec.std, 0.0, 1.0, []
        self.register_buffer("mean", torch.from_numpy(mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.from_numpy(std).reshape(1, -1, 1, 1))
        self.offset, self.scale, self.pairs = offset, scale, pairs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(N, K, H, W)`` of raw ``(N, C, H, W)`` float32 band values."""
        # The band sum is NaN exactly where some band is NaN: one reduction finds nodata pixels.
        nodata = torch.isnan(x.sum(dim=1, keepdim=True))
        zero = torch.zeros((), dtype=x.dtype)
        if self.offset != 0.0 or self.scale != 1.0:
            x = (x + self.offset) * self.scale
        channels = [torch.where(nodata, zero, (x - self.mean) / self.std)]
        for a, b in self.pairs:
            top, total = x[:, a : a + 1] - x[:, b : b + 1], x[:, a : a + 1] + x[:, b : b + 1]
            index = torch.where(total != 0, top / torch.where(total != 0, total, 1.0), zero)
            channels.append(torch.where(nodata, zero, index.clamp(-1.0, 1.0)))
        x = torch.cat(channels, dim=1) if len(channels) > 1 else channels[0]
        logits = self.model(x)
        if logits.shape[1] == 1:  # binary model: P(class 1) as the second channel
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(logits, dim=1)


def deepness_metadata(metadata: Any, options: OnnxExportOptions) -> dict[str, str]:
    """The ``metadata_props`` of an exported file (each value a JSON string).

    Args:
        metadata: A :class:`~geounet.modelfile.ModelMetadata`.
        options: Overlap and segmentation settings for Deepness.

    Returns:
        Key -> JSON text, in the layout the module docstring describes.
    """
    data = metadata.to_dict()
    n_bands = len(metadata.bands)
    chip = int(metadata.chip_size)
    own = {
        **data,
        "onnx": {
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "input_values": "raw band values in the order of 'bands'; NaN in any band = nodata",
            "normalization_in_graph": True,
            "opset": options.opset,
        },
    }
    props: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(c.id): c.name for c in metadata.classes.classes},
        # Deepness wants cm per pixel; geounet's res is in CRS units (metres for UTM).
        "resolution": round(float(metadata.res[0]) * 100.0, 6),
        "tile_size": chip,
        "tiles_size": chip,
        "tiles_overlap": options.tiles_overlap,
        "standardization_mean": [0.0] * n_bands,
        "standardization_std": [1.0 / 255.0] * n_bands,
        "seg_thresh": options.seg_thresh,
        "seg_small_segment": options.seg_small_segment,
        ONNX_METADATA_KEY: own,
    }
    return {k: json.dumps(v, allow_nan=False) for k, v in props.items()}


def export_onnx(
    model_path: str | Path,
    out_path: str | Path,
    *,
    options: OnnxExportOptions | None = None,
) -> Path:
    """Export a model file to a self-describing ONNX file (written atomically).

    Args:
        model_path: A ``.safetensors`` model file.
        out_path: The ``.onnx`` file to write (replaced only once the new one is complete).
        options: Opset and the Deepness settings.

    Returns:
        The written path.

    Raises:
        InputFileError, ModelFileError: The model file is missing or unreadable.
        ConfigError: ``out_path`` does not end in ``.onnx`` or an option is out of range.
        OutputError: The folder cannot be written.
    """
    import onnx

    options = options or OnnxExportOptions()
    out = Path(out_path)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"the ONNX file must end in .onnx (got {out}); e.g. --out model.onnx.")
    loaded = load_model_file(model_path)
    wrapped = RawInputModel(loaded.model, ModelSpec.from_metadata(loaded.metadata)).eval()
    proto = _trace(wrapped, len(loaded.metadata.bands), options.opset)  # raw bands in
    if proto.ir_version > MAX_IR_VERSION or _opset(proto) > MAX_OPSET:
        raise ModelFileError(
            f"the exporter wrote IR version {proto.ir_version} / opset {_opset(proto)}, newer "
            f"than QGIS's onnxruntime reads (IR <= {MAX_IR_VERSION}, opset <= {MAX_OPSET})."
        )
    for key, value in deepness_metadata(loaded.metadata, options).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "geounet"
    proto.doc_string = (
        f"geounet U-Net from {Path(model_path).name}: raw bands {list(loaded.metadata.bands)} "
        f"-> probabilities of {list(loaded.metadata.classes.names)}"
    )
    onnx.checker.check_model(proto)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(proto, tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(
            f"cannot write {out}: {exc.strerror or exc}; choose another --out."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s -> %s (opset %d)", model_path, out, options.opset)
    return out


def _opset(proto: Any) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _trace(model: nn.Module, in_bands: int, opset: int) -> Any:
    """The ONNX ModelProto of ``model`` with dynamic batch, height and width."""
    import io

    import onnx

    # An odd example size makes the trace keep the U-Net's pad-to-a-multiple branch (sized from
    # the input's shape), so any H and W run; a multiple of 16 would bake "no padding" in.
    example = torch.from_numpy(np.full((1, in_bands, 67, 67), 1000.0, dtype=np.float32))
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter writes opset <= 17 directly (the dynamo one starts at 18) and
        # warns about shape-dependent Python branches, which the odd example size settles.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            opset_version=opset,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())
