"""The ``geounet`` command group.

Subcommands live in their own modules and import the library inside the command body, so
``geounet --help`` does not import torch, geopandas or torchgeo.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import click

from geounet import __version__
from geounet.cli.demo import demo
from geounet.cli.evaluate import evaluate
from geounet.cli.export import export
from geounet.cli.info import info
from geounet.cli.predict import predict
from geounet.cli.run import run
from geounet.cli.tile import tile
from geounet.cli.train import train
from geounet.cli.vectorize import vectorize


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="geounet")
@click.option(
    "-v", "--verbose", count=True, help="More log output: debug lines, and Lightning's own."
)
def cli(verbose: int) -> None:
    """geounet: turn multispectral satellite scenes into maps with the U-Net family.

    Stages: tile -> train -> predict -> vectorize -> evaluate. `geounet run JOB.yaml` runs
    them all as one job; each stage command takes --config JOB.yaml plus flags that override
    its fields. `geounet export` turns a model file into ONNX (QGIS, onnxruntime).
    """
    if "torch" not in sys.modules:
        # GNU OpenMP threads spin while they wait for work; on a busy or shared CPU that made
        # training steps up to 10x slower (2-core box, other jobs running). Passive waiting costs
        # little on an idle machine. Only effective before torch loads; a user's value wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.captureWarnings(True)
    # rasterio sometimes warns "Dataset has no geotransform" from inside rasterize() when
    # several threads use GDAL (a known spurious warning, also seen with dask); the masks are
    # right (tests compare them pixel by pixel), so the CLI does not alarm users with it.
    warnings.filterwarnings(
        "ignore", message="Dataset has no geotransform", module=r"rasterio\.features"
    )
    # pyogrio logs every layer it writes at INFO ("Created 18 records"): noise for users.
    logging.getLogger("pyogrio").setLevel(max(level, logging.WARNING))


cli.add_command(tile)
cli.add_command(train)
cli.add_command(predict)
cli.add_command(vectorize)
cli.add_command(evaluate)
cli.add_command(export)
cli.add_command(run)
cli.add_command(demo)
cli.add_command(info)
