"""The self-describing model file: safetensors weights plus JSON metadata, never a pickle.

A model file is one ``.safetensors`` file. Its tensors are the model's ``state_dict``; the
safetensors header's ``__metadata__`` (a str -> str map) holds under the key ``"geounet"`` a JSON
document that says everything a later stage needs to use the weights correctly::

    {"format_version": 1,
     "architecture": {"name": "unet", "in_channels": 13, "num_classes": 4, "options": {...}},
     "bands": ["B01", ...], "normalization": {"mean": [...], "std": [...]},
     "classes": {"classes": [{"id": 0, "name": "other", "color": "#9e9e9e"}, ...],
                 "ignore_index": 255},
     "chip_size": 128, "res": [10.0, 10.0], "crs_hint": "EPSG:32633",
     "nodata": null, "training": {...}, "geounet_version": "0.1.0"}

``nodata`` is the override the training scene was tiled with (``0``, a per-band list, or
``null`` for the files' own nodata and masks); ``predict`` applies it unless given another.
Files without the key (written before it existed) read as ``null``.

``input`` (format 2) is the input recipe of :mod:`geounet.radiometry`: ``{"scale": 0.0001,
"offset": 0.0, "indices": ["ndvi"], "index_bands": {...}}``; ``in_channels`` then counts the
index channels after the bands. Files without it (format 1) are the plain ``(DN - mean) / std``
recipe; a file is written as format 2 only when it has a recipe, so older geounet versions still
read every model without one and refuse (rather than misread) those with one.

Loading parses the header with :mod:`json` and the tensors with :mod:`safetensors`; nothing is
ever unpickled, so a model file from a stranger cannot run code. Files written by ``torch.save``
(a zip archive or a raw pickle) are refused with a message explaining how to convert them.
Lightning checkpoints (``*.ckpt``) are a different thing: trusted local files for resuming a
run, not something to ship.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from geounet import __version__
from geounet._bands import check_scene_bands as check_scene_bands  # moved; re-exported
from geounet._files import staged_file, write_errors
from geounet._metadata import read_metadata_document
from geounet._nodata import nodata_rule_from_json
from geounet.classes import ClassScheme
from geounet.data import Normalization
from geounet.errors import InputFileError, ModelFileError, OutputError

if TYPE_CHECKING:
    from geounet.radiometry import InputRecipe

log = logging.getLogger(__name__)


FORMAT_VERSION = 2
"""Version of the metadata layout this geounet writes (and the newest it reads)."""

METADATA_KEY = "geounet"
"""Key of the JSON document in the safetensors ``__metadata__`` map."""

_MAX_HEADER = 100 * 1024**2  # safetensors' own limit on the JSON header

_CONVERT_HINT = (
    "geounet never unpickles model files, because unpickling can run arbitrary code. To convert "
    "a state_dict you trust: `sd = torch.load(path, weights_only=True)`, build the model with "
    "`geounet.models.create_model(...)`, call `model.load_state_dict(sd)` and write it with "
    "`geounet.modelfile.save_model_file(out, model, metadata)`."
)


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


@dataclass(frozen=True)
class LoadedModel:
    """A model read from a model file.

    Attributes:
        model: The network, rebuilt through :func:`geounet.models.create_model`, weights
            loaded, in eval mode, on the requested device.
        metadata: The file's metadata.
        path: The file it came from.
    """

    model: nn.Module
    metadata: ModelMetadata
    path: Path


def save_model_file(path: str | Path, model: nn.Module, metadata: ModelMetadata) -> Path:
    """Write ``model``'s weights and ``metadata`` to one safetensors file, atomically.

    The file is written under a temporary name in the target folder and renamed, so a reader
    never sees a half-written file.

    Args:
        path: Output file, conventionally ``model.safetensors``.
        model: A model built by :func:`geounet.models.create_model`.
        metadata: Its description; ``metadata.architecture`` must describe ``model``.

    Returns:
        The written path.

    Raises:
        ModelFileError: If ``model`` does not match ``metadata.architecture``.
        OutputError: If the folder cannot be written.
    """
    from safetensors.torch import save_file

    from geounet.models import describe_model

    actual = describe_model(model)
    declared = json_ready(dict(metadata.architecture))
    if json_ready(actual) != declared:
        raise ModelFileError(
            f"the model is {actual} but the metadata describes {declared}; build the metadata "
            "with geounet.models.describe_model(model)."
        )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {METADATA_KEY: json.dumps(metadata.to_dict(), allow_nan=False)}
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent}: {exc.strerror or exc}.") from exc
    needed = sum(t.numel() * t.element_size() for t in tensors.values())
    with staged_file(out) as tmp, write_errors(out, needed_bytes=needed):
        save_file(tensors, tmp, metadata=header)
        # safetensors creates files as 0600; a model file is meant to be shared, so give it the
        # mode any new file gets (0666 less the umask, which can only be read by setting it).
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    return out


def _read_header(path: Path) -> dict[str, Any]:
    """Parse a safetensors header with :mod:`json`, refusing pickles and other formats.

    The format is recognised by its structure, never by a magic byte: an 8-byte little-endian
    header length that fits the file, then that many bytes of a JSON object. (A first byte of
    0x80 is also the pickle opcode, but in safetensors it is just a header length of 128 mod
    256: one valid file in 32.) Nothing is ever unpickled; a pickle is only named as such.
    """
    if not path.is_file():
        raise InputFileError(f"model file {path} does not exist; check the path.")
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            fits = 2 <= length <= min(_MAX_HEADER, size - 8)
            raw = f.read(length) if fits else b""
    except OSError as exc:
        raise InputFileError(
            f"cannot read model file {path}: {exc.strerror or exc}; check its permissions."
        ) from exc
    header = _json_object(raw) if raw[:1] == b"{" else None
    if header is not None:
        return header
    if head.startswith(b"PK\x03\x04"):
        raise ModelFileError(
            f"{path} is a zip archive, which is what torch.save writes (a pickle inside); "
            f"it is not a geounet model file. {_CONVERT_HINT}"
        )
    if head[:1] == b"\x80":
        raise ModelFileError(
            f"{path} looks like a pickle (a legacy torch.save file); it is not a geounet "
            f"model file. {_CONVERT_HINT}"
        )
    if len(head) < 8:
        raise ModelFileError(f"{path} is too short ({size} bytes) to be a safetensors file.")
    if not fits:
        raise ModelFileError(
            f"{path} is not a safetensors file (header length {length} for a file of "
            f"{size} bytes); geounet model files are written by save_model_file."
        )
    raise ModelFileError(
        f"{path} is not a safetensors file: its header is not a JSON object (truncated or "
        "corrupt?); re-create it with `geounet train` or save_model_file."
    )


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` parsed as a JSON object, or None when it is not one."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_model_metadata(path: str | Path) -> ModelMetadata:
    """Read only the metadata of a model file (cheap: the weights are not read).

    Raises:
        InputFileError: If the file does not exist.
        ModelFileError: If it is a pickle/``torch.save`` file, not safetensors, or has no
            geounet metadata.
    """
    p = Path(path)
    meta = _read_header(p).get("__metadata__") or {}
    data = read_metadata_document(
        meta, METADATA_KEY, p,
        f"{p} is a safetensors file without geounet metadata (no {METADATA_KEY!r} key in "
        "__metadata__); write model files with geounet.modelfile.save_model_file.",
    )  # fmt: skip
    try:
        return ModelMetadata.from_dict(data)
    except ModelFileError as exc:
        # from_dict sees only a dict; the message must still name the file it is about.
        raise ModelFileError(
            f"{p}: {exc} Re-create the model file with `geounet train` (or save_model_file)."
        ) from exc


def load_model_file(path: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model file: rebuild the architecture, load the weights, switch to eval mode.

    Args:
        path: A file written by :func:`save_model_file`.
        device: Where the model goes (``"cpu"``, ``"cuda"``, ...).

    Returns:
        The model (eval mode) and its metadata.

    Raises:
        InputFileError: If the file does not exist.
        ModelFileError: If it is a pickle (``torch.save``) file, not a geounet safetensors
            file, or its weights do not fit its architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from geounet.models import MODELS, create_model

    p = Path(path)
    metadata = read_model_metadata(p)
    arch = metadata.architecture
    if arch["name"] not in MODELS and arch.get("module"):
        _import_model_module(str(arch["name"]), str(arch["module"]), p)
    model = create_model(
        str(arch["name"]),
        in_channels=metadata.in_channels,
        num_classes=metadata.num_classes,
        **dict(arch.get("options") or {}),
    )
    try:
        tensors = load_file(p, device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read the weights of {p}: {exc}") from exc
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(
            f"the weights in {p} do not fit its architecture {arch['name']!r}: {exc}"
        ) from exc
    return LoadedModel(model=model.to(device).eval(), metadata=metadata, path=p)


def _import_model_module(name: str, module: str, path: Path) -> None:
    """Import the module that registers a user model (:func:`geounet.models.register_model`)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ModelFileError(
            f"{path} holds the model {name!r} registered by the module {module!r}, which cannot "
            f"be imported ({exc}); install it or add its folder to PYTHONPATH."
        ) from exc
