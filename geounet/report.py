"""A human-readable report of a job: scene, maps, accuracy and training, as HTML and Markdown.

:func:`write_report` fills a folder with ``report.html``, ``report.md`` (the same content) and
the PNGs both link to by relative path, so the folder can be zipped, mailed or served as is:

``truecolour.png``
    The scene in true colour: the ``display_bands`` of :class:`ReportOptions`, else the
    sensor recognised from the band names (:func:`geounet.display.rgb_indexes`: Sentinel-2,
    Landsat 5/7 and 8/9, named red/green/blue), else the first three bands, each stretched
    between its 2nd and 98th percentile. It is read decimated (GDAL ``out_shape``, average
    resampling, overviews when the files have them), so memory stays bounded whatever the
    scene size.
``prediction.png``, ``reference.png``
    Class rasters in the scheme's colours (:func:`geounet.inference.write_preview`: mode
    resampling, 255 transparent); the reference only when given.
``overlay.png``
    The prediction over the true colour, 45 % opaque.
``legend.png``
    Class names and colours of the maps.
``confusion_matrix.png``
    With metrics: the row-normalised confusion matrix (:func:`geounet._plots.plot_confusion`).
``curves.png``, ``val_samples.png``
    Copied from the training folder's ``plots/`` when present.
``baseline_iou.png``
    With a ``baseline`` in the metrics: IoU per class of the model and the random forest on
    the same pixels, beside a table of both (:mod:`geounet._report_baseline`).
``cv_iou.png``
    With ``cross_validation`` in the metrics: mean and std of IoU per class over the folds.

Maps are at most :data:`PREVIEW_MAX_SIDE` pixels on their longer side and keep the raster's
aspect ratio exactly (one PNG pixel per decimated raster pixel, no figure margins).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from geounet import __version__
from geounet._files import staged_output, write_errors
from geounet._plots import new_figure, plot_confusion
from geounet._report_parts import _fmt, _Image, _Section, _Table
from geounet.classes import ClassScheme
from geounet.display import DisplayBands, rgb_indexes
from geounet.errors import GridMismatchError, InputFileError, OutputError
from geounet.grid import Grid
from geounet.raster import GDAL_ENV, SceneInfo, _open, open_scene
from geounet.vectorize import read_class_scheme

log = logging.getLogger(__name__)

__all__ = ["PREVIEW_MAX_SIDE", "ReportOptions", "write_report"]

PREVIEW_MAX_SIDE = 1000
"""Longer side of the map previews, in pixels."""

_OVERLAY_ALPHA = 0.45  # opacity of the class colours over the true colour
_PERCENTILES = (2, 98)  # true-colour stretch


@dataclass(frozen=True)
class ReportOptions:
    """How the report looks.

    Attributes:
        title: The report's title (default: ``geounet report: <scene name>``).
        display_bands: Bands of the true-colour maps: three names or 1-based indexes (red
            first) or a sensor preset (:data:`geounet.display.SENSOR_PRESETS`); default:
            recognised from the band names.
    """

    title: str | None = None
    display_bands: DisplayBands = None


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    scene: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | SceneInfo,
    classes: str | os.PathLike[str],
    reference: str | os.PathLike[str] | None = None,
    metrics: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    train_dir: str | os.PathLike[str] | None = None,
    options: ReportOptions | None = None,
) -> Path:
    """Write ``report.html``, ``report.md`` and their PNGs into ``out_dir``, atomically.

    Everything is written into a temporary sibling folder first, which then replaces
    ``out_dir``: a reader sees the old report or the new one, never half of one.

    Args:
        out_dir: The report folder (e.g. ``OUT/report``); replaced when it exists.
        scene: The predicted scene: a raster path, its single-band files (stacked as
            :func:`geounet.raster.open_scene` does) or an opened :class:`SceneInfo`.
        classes: The class raster of the scene (``classes.tif``); same grid as ``scene``.
            Its ``GEOUNET_CLASSES`` tag gives class names and colours.
        reference: A reference class raster (``reference.tif``, 255 = not labelled).
        metrics: ``metrics.json`` of :func:`geounet.evaluate.evaluate_prediction` (a path or
            the dict); without it the report has no accuracy section.
        train_dir: The training folder; its ``metrics.json`` (summary) and
            ``plots/curves.png`` and ``plots/val_samples.png`` are used when present.
        options: Title and display bands (:class:`ReportOptions`).

    Returns:
        The path of ``report.html``.

    Raises:
        InputFileError: A given file or folder is missing or unreadable, or ``metrics`` is
            not a JSON object.
        GridMismatchError: ``classes`` is not on the scene's grid.
        OutputError: ``out_dir`` exists as a file, or its parent cannot be written.
        BandMismatchError: ``display_bands`` names a band the scene lacks.
    """
    options = options or ReportOptions()
    out = Path(out_dir)
    info = scene if isinstance(scene, SceneInfo) else open_scene(_scene_paths(scene))
    classes_path = Path(classes)
    scheme = _check_classes(classes_path, info)
    rgb = rgb_indexes(info.bands, options.display_bands, scene_name=info.name)
    reference_path = Path(reference) if reference is not None else None
    if reference_path is not None:
        _open(reference_path).close()
    metrics_data = _load_metrics(metrics)
    train_path = Path(train_dir) if train_dir is not None else None
    if train_path is not None and not train_path.is_dir():
        raise InputFileError(f"training folder {train_path} does not exist; check the path.")
    _check_output(out)

    with staged_output(out) as tmp, write_errors(out):
        sections = [_scene_section(info, scheme)]
        sections.append(_map_section(tmp, info, (classes_path, reference_path), scheme, rgb))
        if metrics_data is not None:
            sections.append(_metrics_section(tmp, metrics_data))
            from geounet._report_baseline import yardstick_sections

            sections += yardstick_sections(tmp, metrics_data)
        if train_path is not None:
            sections.append(_training_section(tmp, train_path))
        heading = options.title or f"geounet report: {info.name}"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        intro = f"Written by geounet {__version__} on {stamp}."
        (tmp / "report.html").write_text(_render_html(heading, intro, sections), encoding="utf-8")
        (tmp / "report.md").write_text(_render_markdown(heading, intro, sections), encoding="utf-8")
    log.info("wrote report %s", out / "report.html")
    return out / "report.html"


# ---------------------------------------------------------------------------------- inputs


def _scene_paths(scene: Any) -> str | Path | list[str | Path]:
    """``open_scene``'s argument from one path or a sequence of them."""
    if isinstance(scene, str | os.PathLike):
        return Path(scene)
    return [Path(p) for p in scene]


def _check_classes(path: Path, info: SceneInfo) -> ClassScheme:
    """The class raster's scheme, after checking it lies on the scene's grid."""
    with _open(path) as src:
        grid = Grid.of(src)
        scheme = read_class_scheme(src.tags(), str(path))
    if not grid.matches(info.grid):
        raise GridMismatchError(
            f"class raster {path} ({grid.describe()}) is not on the grid of scene {info.name} "
            f"({info.grid.describe()}); give the classes.tif predicted from this scene."
        )
    return scheme


def _load_metrics(metrics: str | os.PathLike[str] | Mapping[str, Any] | None) -> Any:
    """The metrics dict, read from JSON when a path is given."""
    if metrics is None or isinstance(metrics, Mapping):
        return metrics
    path = Path(metrics)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputFileError(
            f"metrics file {path} does not exist; run `geounet evaluate`."
        ) from exc
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"metrics file {path} is not readable JSON ({exc}); re-run `geounet evaluate`."
        ) from exc
    if not isinstance(data, dict):
        raise InputFileError(f"metrics file {path} holds {type(data).__name__}, not an object.")
    return data


def _check_output(out: Path) -> None:
    """Fail before any work on an output that cannot be written."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; give a folder for the report.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent} ({exc}); choose a writable folder.") from exc
    if not os.access(out.parent, os.W_OK):
        raise OutputError(f"{out.parent} is not writable; choose another report folder.")


# ---------------------------------------------------------------------------------- maps


def _map_section(
    tmp: Path,
    info: SceneInfo,
    rasters: tuple[Path, Path | None],
    scheme: ClassScheme,
    rgb_idx: list[int],
) -> _Section:
    """Write the map PNGs and describe them (``rasters``: the classes and the reference)."""
    classes, reference = rasters
    from PIL import Image

    from geounet.inference import write_preview  # imports torch: only when a report is made

    write_preview(classes, tmp / "prediction.png", scheme, max_side=PREVIEW_MAX_SIDE)
    with Image.open(tmp / "prediction.png") as png:
        prediction = np.asarray(png.convert("RGBA"))
    rgb, valid = _read_true_colour(info, prediction.shape[:2], rgb_idx)
    Image.fromarray(np.dstack([rgb, np.where(valid, 255, 0).astype(np.uint8)])).save(
        tmp / "truecolour.png"
    )
    alpha = (prediction[..., 3:] > 0) * _OVERLAY_ALPHA
    overlay = rgb * (1 - alpha) + prediction[..., :3] * alpha
    Image.fromarray(np.round(overlay).astype(np.uint8)).save(tmp / "overlay.png")
    _plot_legend(scheme, tmp / "legend.png")

    rgb_bands = ", ".join(info.bands[i] for i in rgb_idx)
    images = [
        _Image("truecolour.png", f"True colour ({rgb_bands}, 2-98 % stretch)"),
        _Image("prediction.png", "Prediction (white: no data)"),
    ]
    if reference is not None:
        write_preview(reference, tmp / "reference.png", scheme, max_side=PREVIEW_MAX_SIDE)
        images.append(_Image("reference.png", "Reference (white: not labelled)"))
    images.append(_Image("overlay.png", f"Prediction over true colour ({_OVERLAY_ALPHA:.0%})"))
    return _Section(
        "Maps",
        [images, [_Image("legend.png", "Legend")]],
    )


def _read_true_colour(
    info: SceneInfo, shape: tuple[int, int], indexes: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The scene's true colour at ``shape``: ``(rgb uint8 (H, W, 3), valid (H, W))``.

    Bands are read one by one (a stacked VRT reads much faster so) and decimated by GDAL
    (``out_shape``), which uses the files' overviews or JPEG2000 resolution levels.
    """
    ds = info.dataset()
    with rasterio.Env(**GDAL_ENV):
        data = np.stack(
            [ds.read(i + 1, out_shape=shape, resampling=Resampling.average) for i in indexes]
        )
    valid = info.valid_mask(data, indexes=[i + 1 for i in indexes])
    rgb = np.zeros((*shape, 3), dtype=np.uint8)
    if valid.any():
        values = data[:, valid].astype(np.float64)
        lo, hi = np.percentile(values, _PERCENTILES, axis=1)
        scaled = (data.astype(np.float64) - lo[:, None, None]) / np.maximum(hi - lo, 1e-9)[
            :, None, None
        ]
        rgb = np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    rgb[~valid] = 255
    return rgb, valid


def _plot_legend(scheme: ClassScheme, path: Path) -> None:
    """The class colours and names in one row, plus the no-data swatch."""
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=np.array(c.color) / 255, edgecolor="k", label=c.name)
        for c in scheme.classes
    ]
    handles.append(Patch(facecolor="white", edgecolor="k", label="no data / not labelled"))
    ncol = min(len(handles), 6)
    rows = -(-len(handles) // ncol)
    fig = new_figure(figsize=(1.7 * ncol + 0.4, 0.35 * rows + 0.25))
    fig.legend(
        handles=handles,
        loc="center",
        ncol=ncol,
        frameon=False,
        fontsize=11,
        handlelength=1.6,
        handleheight=1.1,
    )
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.05)


# ---------------------------------------------------------------------------------- sections


def _scene_section(info: SceneInfo, scheme: ClassScheme) -> _Section:
    """Scene name, CRS, size, pixel size, extent and the class scheme."""
    from pyproj import CRS as ProjCRS

    crs = ProjCRS.from_user_input(info.crs.to_wkt())
    unit = "°" if crs.is_geographic else f" {crs.axis_info[0].unit_name}".replace(" metre", " m")
    res_x, res_y = info.res
    height, width = info.shape
    left, bottom, right, top = info.bounds
    digits = 6 if crs.is_geographic else 1
    rows = [
        ["scene", info.name],
        ["files", ", ".join(Path(p).name for p in info.paths)],
        ["bands", f"{info.count} ({', '.join(info.bands)}), {info.dtype}"],
        ["CRS", f"{info.crs.to_string()} ({crs.name})"],
        ["size", f"{width:,} × {height:,} px"],
        ["pixel size", f"{res_x:g}{unit} × {res_y:g}{unit}"],
        [
            "extent",
            f"x {left:,.{digits}f} to {right:,.{digits}f}, "
            f"y {bottom:,.{digits}f} to {top:,.{digits}f}",
        ],
    ]
    if unit == " m":
        rows.append(["area", f"{width * height * res_x * res_y / 1e6:,.2f} km²"])
    classes = _Table(
        ["id", "class", "colour"],
        [[str(c.id), c.name, c.hex] for c in scheme.classes]
        + [[str(scheme.ignore_index), "no data / not labelled", "transparent"]],
        caption="Class scheme",
    )
    return _Section("Scene", [_Table(["", ""], rows), classes])


def _metrics_section(tmp: Path, metrics: Mapping[str, Any]) -> _Section:
    """Pixel metrics per class, means, object metrics and the confusion matrix."""
    blocks: list[str | _Table | list[_Image]] = []
    names = list(metrics.get("classes") or metrics.get("per_class", {}))
    mean = metrics.get("mean") or {}
    summary = (
        f"Mean IoU {_fmt(mean.get('iou'))}, mean F1 {_fmt(mean.get('f1'))}, overall accuracy "
        f"{_fmt(metrics.get('overall_accuracy'))} over {_fmt(metrics.get('pixels_evaluated'))} "
        "evaluated pixels"
    )
    if metrics.get("pixels_excluded") is not None:
        summary += f" ({_fmt(metrics['pixels_excluded'])} excluded: not labelled or no data)"
    if metrics.get("reference"):
        summary += f"; reference: {Path(str(metrics['reference'])).name}"
        if metrics.get("reference_kind"):
            summary += f" ({metrics['reference_kind']})"
    blocks.append(summary + ".")
    absent = metrics.get("absent_classes")
    if absent:
        blocks.append(
            f"Absent from the reference ({metrics.get('scored') or 'scored labels'}): "
            f"{', '.join(absent)}. These classes have no reference pixel, so they have no "
            "IoU or recall and are left out of the means; pixels predicted as them lower the "
            "recall of the classes they really are."
        )
    for warning in metrics.get("warnings") or []:
        blocks.append(f"Warning: {warning}")
    per_class = metrics.get("per_class") or {}
    keys = ("iou", "f1", "precision", "recall")
    rows = [
        [n, *(_fmt(per_class[n].get(k)) for k in (*keys, "support", "predicted"))]
        for n in names
        if n in per_class
    ]
    if mean:
        support = mean.get("classes")
        label = f"mean ({len(support)} classes with support)" if support is not None else "mean"
        rows.append([label, *(_fmt(mean.get(k)) for k in keys), "", ""])
    rows.append(["overall accuracy", _fmt(metrics.get("overall_accuracy")), "", "", "", "", ""])
    blocks.append(
        _Table(
            ["class", "IoU", "F1", "precision", "recall", "reference px", "predicted px"],
            rows,
            caption="Pixel metrics",
        )
    )
    objects = metrics.get("objects") or {}
    if objects.get("classes"):
        threshold = _fmt(objects.get("iou_threshold"), 2)
        columns = {"n_pred": "predicted objects", "n_ref": "reference objects", "tp": "matched",
                   "precision": "precision", "recall": "recall", "f1": "F1",
                   "mean_matched_iou": "mean matched IoU"}  # fmt: skip
        obj_rows = [
            [name, *(_fmt(o.get(k)) for k in columns)] for name, o in objects["classes"].items()
        ]
        caption = f"Object metrics (a match needs IoU ≥ {threshold})"
        blocks.append(_Table(["class", *columns.values()], obj_rows, caption=caption))
    confusion = metrics.get("confusion_matrix") or {}
    matrix = confusion.get("matrix")
    if matrix:
        cm_names = list(confusion.get("classes") or names)
        blocks.append(
            _Table(
                ["reference \\ prediction", *cm_names, "total"],
                [
                    [n, *(_fmt(int(v)) for v in row), _fmt(int(sum(row)))]
                    for n, row in zip(cm_names, matrix, strict=True)
                ],
                caption="Confusion matrix (pixels; rows: reference, columns: prediction)",
            )
        )
        plot_confusion(
            np.asarray(matrix), cm_names, tmp / "confusion_matrix.png", title="Confusion matrix"
        )
        blocks.append(
            [_Image("confusion_matrix.png", "Confusion matrix, share of each reference class")]
        )
    return _Section("Accuracy", blocks)


def _training_section(tmp: Path, train_dir: Path) -> _Section:
    """The training summary of ``metrics.json`` and the training plots."""
    blocks: list[str | _Table | list[_Image]] = []
    summary_path = train_dir / "metrics.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError as exc:
            raise InputFileError(f"{summary_path} is not valid JSON ({exc}).") from exc
        blocks.append(_Table(["", ""], _training_rows(summary), caption="Training summary"))
    images = []
    plots = (
        ("curves.png", "Training curves"),
        ("val_samples.png", "Validation chips: image, label, prediction"),
    )
    for name, caption in plots:
        src = train_dir / "plots" / name
        if src.is_file():
            shutil.copyfile(src, tmp / name)
            images.append(_Image(name, caption))
    if images:
        blocks.append(images)
    if not blocks:
        blocks.append(f"No training summary or plots found in {train_dir}.")
    return _Section("Training", blocks)


def _training_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """Key/value rows of a training ``metrics.json``."""
    options = (summary.get("config") or {}).get("options") or {}
    rows: list[list[str]] = []
    if options.get("model"):
        model_options = options.get("model_options") or {}
        detail = ", ".join(f"{k}={v}" for k, v in model_options.items())
        rows.append(["model", f"{options['model']} ({detail})" if detail else options["model"]])
    for key in ("loss", "batch_size"):
        if options.get(key) is not None:
            rows.append([key.replace("_", " "), str(options[key])])
    if summary.get("epochs") is not None:
        rows.append(["epochs", _fmt(summary["epochs"])])
    if summary.get("best_epoch") is not None:
        # 0-based in the file; 1-based like the curves plot.
        rows.append(["best epoch", f"{summary['best_epoch'] + 1} (by {summary.get('monitor')})"])
    val = summary.get("val_metrics") or {}
    for key, label in (
        ("miou", "validation mean IoU"),
        ("mf1", "validation mean F1"),
        ("oa", "validation overall accuracy"),
    ):
        if val.get(key) is not None:
            rows.append([label, _fmt(float(val[key]))])
    for key, label in (("train_chips", "training chips"), ("val_chips", "validation chips")):
        if summary.get(key) is not None:
            rows.append([label, _fmt(summary[key])])
    if summary.get("fit_seconds") is not None:
        rows.append(["training time", f"{float(summary['fit_seconds']):,.0f} s"])
    return rows


# ---------------------------------------------------------------------------------- rendering

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding-bottom:.3em}
.maps{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0 0 1em;max-width:100%}
.maps figure{flex:1 1 480px;min-width:0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}
"""

_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+( s)?$")


def _render_html(title: str, intro: str, sections: list[_Section]) -> str:
    """A self-contained HTML page (images by relative path); all text is escaped."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(intro)}</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{e(section.heading)}</h2>")
        for block in section.blocks:
            if isinstance(block, str):
                parts.append(f"<p>{e(block)}</p>")
            elif isinstance(block, _Table):
                parts.append(_html_table(block))
            else:
                parts.append('<div class="maps">')
                for img in block:
                    parts.append(
                        f'<figure><img src="{e(img.src)}" alt="{e(img.caption)}">'
                        f"<figcaption>{e(img.caption)}</figcaption></figure>"
                    )
                parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_table(table: _Table) -> str:
    e = html.escape
    out = ["<table>"]
    if table.caption:
        out.append(f"<caption>{e(table.caption)}</caption>")
    if any(table.header):
        out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in table.header) + "</tr>")
    for row in table.rows:
        cells = "".join(
            f'<td class="num">{e(c)}</td>' if _NUMBER.match(c) else f"<td>{e(c)}</td>" for c in row
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _md(text: str) -> str:
    """Escape Markdown's inline syntax (and table pipes) in plain text."""
    escaped = re.sub(r"([\\`*_\[\]<>|])", r"\\\1", text)
    return "\\" + escaped if escaped.startswith("#") else escaped


def _render_markdown(title: str, intro: str, sections: list[_Section]) -> str:
    """The same content as :func:`_render_html`, as GitHub-flavoured Markdown."""
    lines = [f"# {_md(title)}", "", _md(intro), ""]
    for section in sections:
        lines += [f"## {_md(section.heading)}", ""]
        for block in section.blocks:
            if isinstance(block, str):
                lines += [_md(block), ""]
            elif isinstance(block, _Table):
                if block.caption:
                    lines += [f"**{_md(block.caption)}**", ""]
                header = block.header if any(block.header) else [" "] * len(block.header)
                lines.append("| " + " | ".join(_md(h) for h in header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in block.rows]
                lines.append("")
            else:
                for img in block:
                    lines += [f"![{_md(img.caption)}]({img.src})", "", f"*{_md(img.caption)}*", ""]
    return "\n".join(lines)
