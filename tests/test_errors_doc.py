"""docs/errors.md lists every error and warning class of geounet.errors."""

from __future__ import annotations

import inspect
from pathlib import Path

import geounet.errors

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_every_error_and_warning_class_is_documented():
    text = DOC.read_text()
    classes = [
        name
        for name, obj in vars(geounet.errors).items()
        if inspect.isclass(obj) and obj.__module__ == geounet.errors.__name__
    ]
    assert "GeounetError" in classes and "DiskFullError" in classes
    missing = [name for name in classes if f"| `{name}` |" not in text]
    assert not missing, f"add {missing} to the tables of {DOC}"
