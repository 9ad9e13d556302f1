"""``geounet demo``: run the demo job (``configs/demo.yaml``) on the bundled Sentinel-2 sample."""

from __future__ import annotations

from pathlib import Path

import click

from geounet.cli._errors import guarded


@click.command(context_settings={"show_default": True})
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("geounet-demo"),
    help="Job folder of the demo.",
)
@click.option(
    "--epochs", type=int, default=None, help="Training epochs.  [default: the job file's, 100]"
)
@click.option("--force", is_flag=True, help="Run every stage, even those that are up to date.")
@guarded
def demo(out: Path, epochs: int | None, force: bool) -> None:
    """Tile, train, predict, polygonise, evaluate and report the bundled Sentinel-2 scene.

    Runs the job configs/demo.yaml (shipped with geounet, so this works offline): the
    Brandenburg sample, 13 bands stacked to 10 m, OSM land use mapped to field / water /
    building / other; about 3 minutes on 2 CPU cores. Open OUT/predict/classes.tif and
    OUT/vectorize/polygons.gpkg in QGIS, OUT/report/report.html in a browser.
    """
    from geounet.cli._job import echo_job_result, run_job_file
    from geounet.sample_data import demo_job_path

    overrides = {"train.epochs": epochs} if epochs is not None else {}
    echo_job_result(run_job_file(demo_job_path(), out=out, overrides=overrides, force=force))
