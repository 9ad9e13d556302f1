"""``geounet demo``: run the whole pipeline on the bundled real Sentinel-2 sample."""

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
@click.option("--epochs", type=int, default=None, help="Training epochs.  [default: 60]")
@click.option("--overwrite", is_flag=True, help="Replace earlier demo outputs.")
@guarded
def demo(out: Path, epochs: int | None, overwrite: bool) -> None:
    """Tile, train, predict, polygonise and evaluate the bundled Sentinel-2 scene.

    The sample (Brandenburg, 13 bands stacked to 10 m, OSM land use mapped to field / water /
    building / other) ships with geounet, so this runs offline; about 5 minutes on 2 CPU cores.
    Open OUT/predict/classes.tif and OUT/predict/polygons.gpkg in QGIS.
    """
    from geounet.demo import run_demo

    result = run_demo(out, epochs=epochs, overwrite=overwrite)
    mean = result.metrics.get("mean", {})
    click.echo(f"chips:    {result.chips}")
    click.echo(f"model:    {result.model}")
    click.echo(f"classes:  {result.classes}  (QGIS: named, coloured classes)")
    click.echo(f"polygons: {result.polygons}")
    click.echo(
        f"test split: mIoU {mean.get('iou', float('nan')):.3f}, overall accuracy "
        f"{result.metrics.get('overall_accuracy', float('nan')):.3f}  ({out / 'metrics.json'})"
    )
