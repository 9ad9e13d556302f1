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
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geounet._bands import check_scene_bands as check_scene_bands  # moved; re-exported
from geounet._files import staged_file, write_errors
from geounet._metadata import read_metadata_document
from geounet._model_metadata import (  # noqa: F401  (moved; re-exported)
    FORMAT_VERSION,
    ModelMetadata,
    json_ready,
)
from geounet.errors import InputFileError, ModelFileError, OutputError

log = logging.getLogger(__name__)


METADATA_KEY = "geounet"
"""Key of the JSON document in the safetensors ``__metadata__`` map."""

_MAX_HEADER = 100 * 1024**2  # safetensors' own limit on the JSON header

_CONVERT_HINT = (
    "geounet never unpickles model files, because unpickling can run arbitrary code. To convert "
    "a state_dict you trust: `sd = torch.load(path, weights_only=True)`, build the model with "
    "`geounet.models.create_model(...)`, call `model.load_state_dict(sd)` and write it with "
    "`geounet.modelfile.save_model_file(out, model, metadata)`."
)


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
