"""``geounet export``: a model file -> a self-describing ONNX file (QGIS, onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import click

from geounet.cli._errors import guarded


@click.command(context_settings={"show_default": True})
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx"]),
    default="onnx",
    help="Export format.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write, e.g. model.onnx.",
)
@click.option(
    "--opset", type=click.IntRange(11, 17), default=17, help="ONNX opset (QGIS: at most 17)."
)
@click.option(
    "--tiles-overlap",
    type=click.IntRange(0, 99),
    default=25,
    help="Tile overlap in percent that the Deepness plugin proposes.",
)
@click.option(
    "--seg-thresh",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    help="Deepness: probability below which a pixel stays unclassified.",
)
@click.option(
    "--seg-small-segment",
    type=click.IntRange(min=0),
    default=0,
    help="Deepness: remove segments smaller than this many pixels (0: keep all).",
)
@guarded
def export(model_file: Path, fmt: str, out: Path, **options: int | float) -> None:
    """Export MODEL_FILE (.safetensors) to ONNX for onnxruntime, QGIS and Deepness.

    The graph takes raw band values (N x C x H x W, float32; NaN = nodata), normalises them
    itself and returns softmax probabilities; its metadata_props hold the Deepness keys and
    the model file's metadata, so `geounet predict model.onnx` (no torch needed) and the
    geounet QGIS plugin can use it directly.
    """
    from geounet.export import OnnxExportOptions, export_onnx

    path = export_onnx(model_file, out, options=OnnxExportOptions(**options))  # type: ignore[arg-type]
    click.echo(f"wrote {path} ({fmt})")
