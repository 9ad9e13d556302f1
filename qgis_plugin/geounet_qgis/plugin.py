"""The plugin object: registers the geounet Processing provider (GUI or headless)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication


class GeounetPlugin:
    """Adds the "geounet" provider to the Processing toolbox; removes it on unload."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: Any = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS calls it by this name)
        """Register the provider (QGIS calls this also when running without a GUI)."""
        from .provider import GeounetProvider

        self.provider = GeounetProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        """QGIS's GUI hook: the provider is the whole user interface."""
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider when the plugin is disabled or QGIS quits."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
