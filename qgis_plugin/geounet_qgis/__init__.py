"""geounet for QGIS: a Processing provider around geounet's torch-free (onnxruntime) pipeline."""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> Any:  # noqa: N802 (the name QGIS looks up)
    """QGIS's entry point: the plugin object for ``iface`` (``None`` when headless)."""
    from .plugin import GeounetPlugin

    return GeounetPlugin(iface)
