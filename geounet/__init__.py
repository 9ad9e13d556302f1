"""geounet: turn multispectral satellite scenes into maps with the U-Net family.

Stages (each a function and a ``geounet`` command): tiling -> training -> prediction ->
vectorising -> evaluation. Heavy libraries (geopandas, torchgeo, lightning) are imported inside
the stage that needs them, so ``import geounet`` and ``geounet --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "open_scene",
    "tile_scene",
    "TilingOptions",
    "predict_scene",
    "PredictOptions",
]


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep `import geounet` light (torch and geopandas load on first use).
    if name == "open_scene":
        from geounet.raster import open_scene

        return open_scene
    if name in ("tile_scene", "TilingOptions"):
        from geounet import tiling

        return getattr(tiling, name)
    if name in ("predict_scene", "PredictOptions"):
        from geounet import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'geounet' has no attribute {name!r}")
