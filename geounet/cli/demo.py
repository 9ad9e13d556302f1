"""``geounet demo``: run the main job on the bundled real Sentinel-2 sample."""

from __future__ import annotations

from pathlib import Path

import click

from geounet.cli._errors import guarded


@click.command(context_settings={"show_default": True})
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("geounet-demo"),
    help="Output folder of the demo job.",
)
@click.option("--overwrite", is_flag=True, help="Replace earlier demo outputs.")
@guarded
def demo(out: Path, overwrite: bool) -> None:
    """Tile the bundled Brandenburg Sentinel-2 scene (13 bands at 10 m, OSM classes).

    Writes OUT/chips (chips, label masks, index.gpkg, stats.json). Offline: the sample ships
    with geounet.
    """
    from geounet import sample_data
    from geounet.classes import ClassMap
    from geounet.tiling import TilingOptions, tile_scene

    sample = sample_data.brandenburg_s2()
    result = tile_scene(
        sample.band_paths,
        out / "chips",
        labels=sample.labels,
        class_map=ClassMap.from_yaml(sample.class_map),
        options=TilingOptions(chip_size=256, stride=256),
        overwrite=overwrite,
    )
    click.echo(f"wrote {result.chips_written} chips to {result.out_dir}; open index.gpkg in QGIS")
