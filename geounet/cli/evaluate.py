"""``geounet evaluate``: pixel and object metrics of a class raster against reference labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geounet.cli._errors import guarded


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    if value.strip().lower() in ("", "none"):
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_table(metrics: dict[str, Any]) -> str:
    """A compact text table of ``evaluate_prediction``'s metrics (``-`` for null)."""
    rows = [("class", "IoU", "F1", "prec.", "recall", "support")]
    for name, m in metrics["per_class"].items():
        scores = (_num(m[k]) for k in ("iou", "f1", "precision", "recall"))
        rows.append((name, *scores, str(m["support"])))
    mean = metrics["mean"]
    rows.append(("mean", *(_num(mean[k]) for k in ("iou", "f1", "precision", "recall")), ""))
    lines = [f"{r[0]:<12}" + "".join(f"{c:>8}" for c in r[1:5]) + f"{r[5]:>12}" for r in rows]
    lines[-1] += f"  (over {', '.join(mean['classes'])})"
    lines.append(
        f"overall accuracy {_num(metrics['overall_accuracy'])} over "
        f"{metrics['pixels_evaluated']} pixels ({metrics['pixels_excluded']} excluded)"
    )
    objects = metrics.get("objects")
    if objects:
        lines.append(f"objects (IoU >= {objects['iou_threshold']}):")
        for name, o in objects["classes"].items():
            lines.append(
                f"  {name:<10} TP {o['tp']} of {o['n_pred']} predicted / {o['n_ref']} reference: "
                f"precision {_num(o['precision'])}, recall {_num(o['recall'])}, F1 {_num(o['f1'])}"
            )
    return "\n".join(lines)


@click.command(context_settings={"show_default": True})
@click.argument("prediction", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--reference",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference labels: a class raster (any grid; resampled nearest) or polygons "
    "(GPKG/GeoJSON/SHP).",
)
@click.option(
    "--class-map",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML mapping reference values to the prediction's classes.  "
    "[default: values are class ids or names]",
)
@click.option(
    "--class-column",
    help="Attribute column of the reference polygons holding class values.  "
    "[default: the class map's 'column']",
)
@click.option(
    "--object-classes",
    callback=_names,
    help="Comma-separated classes given object metrics ('none' for none).  "
    "[default: building,field, where the scheme has them]",
)
@click.option(
    "--iou-threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.5,
    help="Smallest IoU of a predicted/reference object match.",
)
@click.option(
    "--min-area-m2",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Ignore objects smaller than this (square metres).",
)
@click.option(
    "--unknown-classes",
    type=click.Choice(["error", "miss"]),
    default="error",
    help="A reference class the prediction's scheme lacks: refuse (error), or score it as a "
    "class never predicted (miss).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the metrics as JSON here (checked writable first).  [default: print only]",
)
@click.option(
    "--baseline",
    type=click.Choice(["none", "random_forest"]),
    default="none",
    help="Also train a per-pixel random forest (100 trees, raw bands) on the train split of "
    "--chips, predict --scene and score it on the same pixels.",
)
@click.option(
    "--chips",
    type=click.Path(file_okay=False, path_type=Path),
    help="Chips folder the model was trained on (for --baseline).",
)
@click.option(
    "--scene",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The predicted scene: one raster, or its band files in order (for --baseline).",
)
@guarded
def evaluate(
    prediction: Path,
    reference: Path,
    class_map: Path | None,
    out: Path | None,
    baseline: str,
    chips: Path | None,
    scene: tuple[Path, ...],
    **options: Any,
) -> None:
    """Compare PREDICTION (classes.tif of `geounet predict`) with reference labels.

    Prints per-class IoU, F1, precision, recall and support, their means over the classes
    present in the reference, overall accuracy and object-level scores; pixels that are 255
    (ignore / nodata) in the reference or the prediction are not counted.

    With --baseline random_forest, a per-pixel random forest trained on the train chips of
    --chips predicts --scene and is scored by the same function on the same pixels; its
    metrics go under 'baseline' in --out, its class raster beside it (OUT_baseline_classes.tif).
    """
    from geounet.classes import ClassMap
    from geounet.evaluate import check_output_path, evaluate_prediction, write_metrics

    if out is not None:
        check_output_path(out)  # before minutes of computing, not after
    if baseline == "random_forest" and (chips is None or not scene):
        raise click.UsageError("--baseline random_forest needs --chips and --scene.")
    cmap = ClassMap.from_yaml(class_map) if class_map is not None else None
    metrics = evaluate_prediction(prediction, reference, class_map=cmap, **options)
    click.echo(format_table(metrics))
    if baseline == "random_forest" and chips is not None:
        metrics["baseline"] = _score_forest(chips, scene, reference, out, cmap, options)
        click.echo("random forest (same pixels):\n" + format_table(metrics["baseline"]))
    if out is not None:
        click.echo(f"wrote {write_metrics(metrics, out)}")


def _score_forest(
    chips: Path,
    scene: tuple[Path, ...],
    reference: Path,
    out: Path | None,
    class_map: Any,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The forest's metrics; its class raster beside --out, else in a temporary folder."""
    import tempfile
    from contextlib import nullcontext

    from geounet.baseline import evaluate_forest

    folder = nullcontext(str(out.parent)) if out is not None else tempfile.TemporaryDirectory()
    with folder as where:
        name = f"{out.stem}_baseline_classes.tif" if out is not None else "baseline_classes.tif"
        return evaluate_forest(
            chips, list(scene), reference, Path(where) / name, class_map=class_map, **options
        )
