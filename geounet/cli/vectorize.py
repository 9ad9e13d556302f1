"""``geounet vectorize``: class raster -> polygons (GeoPackage), block by block."""

from __future__ import annotations

from pathlib import Path

import click

from geounet.cli._errors import guarded


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@click.command(context_settings={"show_default": True})
@click.argument("class_raster", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output GeoPackage (layer 'polygons').",
)
@click.option(
    "--probabilities",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="probabilities.tif of the same prediction: adds mean_prob per polygon.  "
    "[default: probabilities.tif beside the class raster, if any]",
)
@click.option(
    "--simplify",
    "simplify_m",
    type=float,
    default=0.0,
    help="Simplification tolerance in metres (CRS units); shared borders stay shared.",
)
@click.option(
    "--min-area",
    "min_area_m2",
    type=float,
    default=0.0,
    help="Drop polygons smaller than this many square metres.",
)
@click.option(
    "--classes",
    callback=_names,
    default=None,
    help="Comma-separated class names to keep, e.g. field,water,building.  [default: all]",
)
@click.option("--block-size", type=int, default=1024, help="Block side in pixels (memory bound).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Polygonise the blocks on a local dask cluster of N worker processes (same output).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="Polygonise the blocks on a running dask scheduler (e.g. tcp://10.0.0.5:8786).",
)
@guarded
def vectorize(
    class_raster: Path,
    out: Path,
    probabilities: Path | None,
    workers: int | None,
    scheduler: str | None,
    **options: object,
) -> None:
    """Polygonise CLASS_RASTER (e.g. classes.tif) into OUT with class, area and confidence.

    Polygons are merged across block seams, so the result equals polygonising the whole raster
    at once; holes are kept; the layer has the raster's CRS and a QGIS style in class colours.
    With --workers or --scheduler the blocks are polygonised on dask (e.g. the classes.vrt of
    `geounet predict --mosaic`); the polygons are the same.
    """
    from geounet.vectorize import vectorize_raster

    if probabilities is None:
        # predict writes probabilities.tif beside classes.tif (--mosaic: .vrt beside .vrt too).
        suffix = ".vrt" if class_raster.suffix.lower() == ".vrt" else ".tif"
        if (class_raster.parent / f"probabilities{suffix}").exists():
            probabilities = class_raster.parent / f"probabilities{suffix}"
    if workers is not None or scheduler is not None:
        from geounet.cli._scenes import ScenesFlags
        from geounet.mosaic import vectorize_raster_on_cluster

        if workers is not None and scheduler is not None:
            raise click.UsageError("give --workers (a local cluster) or --scheduler, not both.")
        cluster = ScenesFlags((), workers, scheduler, 1).cluster()
        path = vectorize_raster_on_cluster(
            class_raster, out, cluster=cluster, probabilities_path=probabilities, **options
        )  # type: ignore[arg-type]
    else:
        path = vectorize_raster(class_raster, out, probabilities_path=probabilities, **options)  # type: ignore[arg-type]
    click.echo(f"wrote {path}")
