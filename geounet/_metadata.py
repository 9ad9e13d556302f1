"""The geounet metadata document inside a model file, safetensors or ONNX (no torch here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geounet.errors import ModelFileError


def read_metadata_document(
    entries: Mapping[str, str], key: str, path: Path, missing: str
) -> dict[str, Any]:
    """The JSON object stored under ``key`` of a file's string metadata.

    Args:
        entries: The file's string metadata (safetensors ``__metadata__``, ONNX
            ``metadata_props``).
        key: Where geounet stores its document.
        path: The file, for messages.
        missing: The message when ``key`` is absent (says how to make a proper file).

    Raises:
        ModelFileError: ``key`` is absent, or its value is not a JSON object.
    """
    if key not in entries:
        raise ModelFileError(missing)
    try:
        data = json.loads(entries[key])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: the geounet metadata is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: the geounet metadata must be a JSON object.")
    return data
