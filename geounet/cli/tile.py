"""``geounet tile``: cut a scene into georeferenced chips, label masks and a chip index.

One scene (or a config's ``scenes``, into one chips folder with
:func:`geounet.tiling.tile_scene_set`) runs in this process; ``--scenes`` tiles many into
separate chips folders as tasks on dask.distributed (:func:`geounet.distributed.tile_scenes`).
"""

from __future__ import annotations

from pathlib import Path

import click

from geounet.cli._errors import guarded
from geounet.cli._nodata import nodata_option
from geounet.cli._scenes import ScenesFlags, check_scene_mode, report_scenes, scenes_options


def _fractions(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple | None:
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected three numbers like 0.7,0.15,0.15, got {value!r}"
        ) from None
    if len(parts) != 3:
        raise click.BadParameter(
            f"expected train,val,test fractions (three numbers), got {value!r}"
        )
    return parts


def _display_bands(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | list[str | int] | None:
    if value is None or "," not in value:
        return value
    return [int(v) if v.strip().isdigit() else v.strip() for v in value.split(",")]


@click.command(context_settings={"show_default": True})
@click.argument("scene", nargs=-1, type=str)  # str: a Path collapses /vsicurl/https://
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output chips folder (required here or in the config).",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Label polygons (GPKG/GeoJSON/SHP) or a class raster.  [default: none, images only]",
)
@click.option(
    "--class-column",
    help="Attribute column of the label polygons holding class values.  "
    "[default: the class map's 'column']",
)
@click.option(
    "--class-map",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Class-map YAML: the classes and the label values of each (docs/labels.md).  "
    "[default: polygons: geounet's 4 classes; a class raster: the raster's own classes]",
)
@click.option(
    "--classes-from-labels/--no-classes-from-labels",
    default=None,
    help="Take the classes from the class raster (its category names, colour table or "
    "distinct codes, remapped to 0..K-1).  [default: yes without --class-map]",
)
@click.option(
    "--background",
    type=click.Choice(["ignore", "unlabelled"]),
    help="Pixels outside every polygon: ignored, or the background class (footprint "
    "labels).  [default: ignore]",
)
@click.option("--background-class", help="Class of unlabelled pixels.  [default: class 0]")
@click.option(
    "--ignore-buffer",
    "ignore_buffer_m",
    type=float,
    help="Ring of ignore around the polygons, in metres (with --background unlabelled).  "
    "[default: 0]",
)
@click.option(
    "--bands",
    callback=_display_bands,
    help="Bands of the scene to tile, in order: names or 1-based indexes, e.g. "
    "B02,B03,B04,B08 or 2,3,4,8.  [default: every band]",
)
@click.option(
    "--display-bands",
    callback=_display_bands,
    help="Red,green,blue bands of true-colour maps (names or 1-based indexes) or a preset: "
    "sentinel2, landsat8-9, landsat5-7, planetscope4, planetscope8, naip.  "
    "[default: from the band names]",
)
@click.option("--chip-size", type=int, help="Chip side in pixels.  [default: 256]")
@click.option(
    "--stride",
    type=int,
    help="Step between chip starts in pixels (< chip size overlaps).  [default: chip size]",
)
@click.option(
    "--edge",
    type=click.Choice(["shift", "pad"]),
    help="Last chip of a row/column: shifted inward to end at the edge, or padded with "
    "nodata.  [default: shift]",
)
@click.option(
    "--max-nodata",
    "max_nodata_fraction",
    type=float,
    help="Skip chips with a larger nodata fraction.  [default: 0.5]",
)
@click.option(
    "--split",
    "split_fractions",
    callback=_fractions,
    help="Train,val,test fractions of the spatial split blocks.  [default: 0.7,0.15,0.15]",
)
@click.option(
    "--split-block",
    "split_block_chips",
    type=int,
    help="Side of a spatial split block, in chips (1 = random per chip).  [default: 2]",
)
@click.option("--seed", type=int, help="Seed of the split draw.  [default: 0]")
@click.option(
    "--compress",
    type=click.Choice(["zstd", "deflate", "lzw", "none"]),
    help="Lossless codec of the chip GeoTIFFs.  [default: zstd]",
)
@click.option(
    "--workers",
    type=int,
    help="Threads reading and writing chips (per scene).  [default: one per CPU; with "
    "--scenes on a local cluster, the CPUs split between its workers]",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Job YAML; its 'tile' section gives defaults that flags override.",
)
@nodata_option("  [default: the files' own nodata and masks]")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@scenes_options("--dask-workers")
@guarded
def tile(
    scene: tuple[str, ...],
    config_path: Path | None,
    overwrite: bool,
    scenes: tuple[str, ...],
    dask_workers: int | None,
    scheduler: str | None,
    retries: int,
    **flags: object,
) -> None:
    """Cut SCENE into georeferenced chips with label masks, index.gpkg and stats.json.

    SCENE is one multi-band raster (GeoTIFF/COG/VRT) or several single-band files (e.g.
    Sentinel-2 B02.jp2 B03.jp2 ...) stacked onto the finest grid. Writes DIR/images/*.tif,
    DIR/labels/*.tif (uint8, 255 = ignore), DIR/index.gpkg (open it in QGIS), DIR/stats.json,
    DIR/classes.json and DIR/tiling.json. Nothing is written when an input is bad.

    Many scenes: give --scenes instead of SCENE (a .txt list, one scene per line, or a quoted
    glob; repeatable; it replaces the config's scene). Each scene is a task on a local dask
    cluster (--dask-workers N) or a running one (--scheduler ADDRESS) and becomes the chips
    folder DIR/<scene-stem>/; --labels serves every scene. DIR/run.json lists each scene's
    status, seconds and outputs. The exit status is 1 when a scene failed.

    Several scenes into ONE chips folder (one index with a `scene` column, pooled statistics,
    one model): list them under `scenes:` in the config's tile section, each with a name and
    its labels, and split by spatial blocks or hold whole scenes out (`split: {by: scene,
    test: [...]}`); see README, Many scenes in one job.
    """
    from geounet._lock import folder_lock
    from geounet.config import TileConfig, load_section
    from geounet.tiling import tile_scene_set

    scene_flags = ScenesFlags(scenes, dask_workers, scheduler, retries)
    check_scene_mode(scene, scene_flags, required=False)
    overrides = dict(flags)
    if scene:
        overrides["scene"] = list(scene)
    many = None
    if scenes:
        from geounet.distributed import resolve_scenes, tile_scenes

        many = resolve_scenes(scenes)
        overrides["scene"] = list(many[0])  # the config needs a scene; --scenes replaces it
    cfg = load_section(config_path, "tile", overrides, TileConfig)
    with folder_lock(cfg.out, beside=True):  # tiling swaps the whole folder in
        if many is not None:
            kwargs = cfg.tiling_kwargs()
            del kwargs["scene_paths"]
            out_dir = kwargs.pop("out_dir")
            runs = tile_scenes(
                many, out_dir, cluster=scene_flags.cluster(), overwrite=overwrite, **kwargs
            )
            report_scenes(runs, "tiled")
            return
        # One scene, or the config's `scenes` together into one chips folder.
        result = tile_scene_set(**cfg.scene_set_kwargs(), overwrite=overwrite)
    counts = ", ".join(f"{k} {v}" for k, v in result.split_counts.items())
    click.echo(
        f"wrote {result.chips_written} chips ({result.chips_skipped_nodata} skipped as nodata; "
        f"{counts}) to {result.out_dir}"
    )
