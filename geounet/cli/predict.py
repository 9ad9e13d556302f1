"""``geounet predict``: predict whole scenes tile by tile into a class COG (and probabilities).

One scene runs in this process; ``--scenes`` runs many as tasks on dask.distributed
(:func:`geounet.distributed.predict_scenes`).
"""

from __future__ import annotations

from pathlib import Path

import click

from geounet.cli._errors import guarded
from geounet.cli._nodata import nodata_option
from geounet.cli._scenes import ScenesFlags, check_scene_mode, report_scenes, scenes_options


@click.command(context_settings={"show_default": True})
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("scene", nargs=-1, type=str)  # str: a Path collapses /vsicurl/https://
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder for classes.tif, classes.qml, preview.png (and probabilities.tif); "
    "with --scenes, one sub-folder per scene plus run.json.",
)
@scenes_options("--workers", "--dask-workers", gpu=True)
@click.option(
    "--mosaic",
    "mosaic",
    is_flag=True,
    help="Predict SCENE (one large raster or VRT, or several overlapping scenes on one grid) as "
    "one seamless map, in blocks on dask (--workers N or --scheduler ADDRESS); a rerun skips "
    "finished blocks. See docs/cluster.md.",
)
@click.option(
    "--block-size",
    type=click.IntRange(min=16),
    default=4096,
    help="With --mosaic: output block side in pixels (a multiple of 16).",
)
@click.option(
    "--chip-size",
    type=int,
    default=None,
    help="Chip side in pixels.  [default: the model's training chip size]",
)
@click.option(
    "--overlap",
    type=int,
    default=None,
    help="Pixels shared by neighbouring chips.  [default: chip size / 4]",
)
@click.option("--batch-size", type=int, default=4, help="Chips per forward pass.")
@click.option(
    "--blend",
    type=click.Choice(["gaussian", "cosine", "crop"]),
    default="gaussian",
    help="How overlapping chips are merged (crop keeps each chip's centre).",
)
@click.option("--tta", is_flag=True, help="Average the 8 flips/rotations (8x slower).")
@click.option(
    "--probabilities", is_flag=True, help="Also write probabilities.tif (uint8 0-255 per class)."
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    help="Where the model runs (auto: cuda when available).",
)
@click.option(
    "--readers",
    type=click.IntRange(min=1),
    default=None,
    help="Threads reading chips ahead of the model.  [default: 2 on a CPU, one a core on a GPU]",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "torch", "onnx"]),
    default="auto",
    help="What runs the model: torch, or onnx (onnxruntime, a file from `geounet export`; "
    "no torch needed); auto: onnx for a .onnx MODEL_FILE.",
)
@click.option(
    "--compile",
    "compile_model",
    is_flag=True,
    help="torch.compile the model first (GPU, large scenes).",
)
@click.option(
    "--bands",
    default=None,
    help="Bands of the scene to predict, in order: names or 1-based indexes, e.g. "
    "B02,B03,B04,B08 or 2,3,4,8.  [default: the model's bands, picked by name when the scene "
    "has them all in any order]",
)
@nodata_option("  [default: the model file's rule, the one its chips were tiled with]")
@click.option(
    "--allow-resolution-mismatch",
    is_flag=True,
    help="Predict even when the scene's pixel size differs more than 1.5x from the model's "
    "(compared in metres; degrees converted at the scene centre).",
)
@click.option(
    "--dn-offset",
    type=float,
    default=None,
    help="DN added to harmonise the scene for a model with an input recipe (-1000 for a "
    "Sentinel-2 product of baseline >= 04.00).  [default: the scene's product metadata, else "
    "the training scene's convention]",
)
@guarded
def predict(
    model_file: Path,
    scene: tuple[str, ...],
    out: Path,
    compile_model: bool,
    scenes: tuple[str, ...],
    dask_workers: int | None,
    scheduler: str | None,
    retries: int,
    mosaic: bool,
    block_size: int,
    **options: object,
) -> None:
    """Predict SCENE with MODEL_FILE and write DIR/classes.tif (COG, palette, names).

    SCENE is one multi-band raster or the model's band files (e.g. Sentinel-2 JP2s) in the
    model's band order. Bands are checked against the model file before any compute.

    Many scenes: give --scenes instead of SCENE (a .txt list, one scene per line, or a quoted
    glob; repeatable). Each scene is a task on a local dask cluster (--workers N) or a running
    one (--scheduler ADDRESS) and writes DIR/<scene-stem>/; DIR/run.json lists each scene's
    status, seconds and outputs. The exit status is 1 when a scene failed.

    One huge mosaic: --mosaic cuts SCENE's map into blocks, each a dask task, and writes one
    seamless map (the same pixels as predicting it in one process) into DIR: classes.tif,
    classes.vrt over DIR/blocks/, item.json and mosaic.json. SCENE may then be several
    overlapping scenes (put on one grid in DIR/mosaic.vrt). A rerun skips finished blocks.
    """
    from geounet._lock import folder_lock
    from geounet.inference import PredictOptions, predict_scene

    flags = ScenesFlags(scenes, dask_workers, scheduler, retries)
    if mosaic and (flags.scenes or not scene):
        raise click.UsageError(
            "--mosaic predicts SCENE (one raster, or several scenes), not --scenes."
        )
    if not mosaic:
        check_scene_mode(scene, flags, required=True)
    opts = PredictOptions(compile=compile_model, **options)  # type: ignore[arg-type]
    with folder_lock(out, beside=True):
        if mosaic:
            from geounet.mosaic import MosaicOptions, predict_mosaic, report_mosaic

            source = str(scene[0]) if len(scene) == 1 else [str(p) for p in scene]
            report_mosaic(
                predict_mosaic(
                    str(model_file), source, out, options=opts, cluster=flags.cluster(),
                    mosaic_options=MosaicOptions(block_size=block_size),
                )
            )  # fmt: skip
            return
        if scenes:
            from geounet.distributed import predict_scenes, resolve_scenes

            many = predict_scenes(
                str(model_file), resolve_scenes(scenes), out, options=opts, cluster=flags.cluster()
            )
            report_scenes(many, "predicted")
            return
        paths = [str(p) for p in scene]
        result = predict_scene(str(model_file), paths, out, options=opts)
    click.echo(
        f"wrote {result.classes}" + (f" and {result.probabilities}" if result.probabilities else "")
    )
