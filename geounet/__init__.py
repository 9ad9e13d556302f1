"""geounet: turn multispectral satellite scenes into maps with the U-Net family.

Stages (each a function and a ``geounet`` command): tiling -> training -> prediction ->
vectorising -> evaluation, and jobs that chain them. Heavy libraries (geopandas, torchgeo,
lightning) are imported inside the stage that needs them, so ``import geounet`` and
``geounet --help`` stay fast.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports lazily
    from geounet.classes import ClassMap as ClassMap
    from geounet.config import load_job_config as load_job_config
    from geounet.evaluate import evaluate_prediction as evaluate_prediction
    from geounet.inference import PredictOptions as PredictOptions
    from geounet.inference import predict_scene as predict_scene
    from geounet.job import run_job as run_job
    from geounet.labels import LabelOptions as LabelOptions
    from geounet.modelfile import load_model_file as load_model_file
    from geounet.raster import open_scene as open_scene
    from geounet.tiling import SceneSource as SceneSource
    from geounet.tiling import TilingOptions as TilingOptions
    from geounet.tiling import tile_scene as tile_scene
    from geounet.tiling import tile_scene_set as tile_scene_set
    from geounet.training import TrainingOptions as TrainingOptions
    from geounet.training import fit as fit
    from geounet.vectorize import vectorize_raster as vectorize_raster
    from geounet.xarray import open_prediction as open_prediction

if "torch" not in sys.modules:
    # GNU OpenMP threads spin while they wait for work. Prediction runs a reader, a writer and
    # GDAL's threads beside torch's, and on a busy or small CPU the spinning threads took their
    # cores: one predict of a 4096^2 scene on 2 cores took 38 s instead of 12-14 s. Passive
    # waiting costs little on an idle machine. Set here, not only in the CLI, so the library
    # and the benches get it too; it only takes effect before torch loads, and a user's value
    # wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_EXPORTS = {
    "open_scene": "geounet.raster",
    "ClassMap": "geounet.classes",
    "tile_scene": "geounet.tiling",
    "tile_scene_set": "geounet.tiling",
    "SceneSource": "geounet.tiling",
    "TilingOptions": "geounet.tiling",
    "LabelOptions": "geounet.labels",
    "fit": "geounet.training",
    "TrainingOptions": "geounet.training",
    "load_model_file": "geounet.modelfile",
    "predict_scene": "geounet.inference",
    "open_prediction": "geounet.xarray",
    "PredictOptions": "geounet.inference",
    "vectorize_raster": "geounet.vectorize",
    "evaluate_prediction": "geounet.evaluate",
    "load_job_config": "geounet.config",
    "run_job": "geounet.job",
}
"""Public name -> the module defining it (imported on first use)."""

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep `import geounet` light (torch and geopandas load on first use).
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'geounet' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
