"""Report sections that hold the model against the per-pixel random forest.

``Model vs random forest``: the test metrics of the model and of the forest
(:mod:`geounet.baseline`) scored on the same pixels, as a table and per-class IoU bars.
``Spatial cross-validation``: the mean and standard deviation over folds of every metric
(:mod:`geounet.folds`), model and forest side by side. Both read ``metrics.json`` of the
``evaluate`` stage (its ``baseline`` and ``cross_validation`` keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geounet._plots import new_figure
from geounet._report_parts import _fmt, _Image, _Section, _Table

_MODEL, _FOREST = "U-Net", "random forest"
_COLOURS = {_MODEL: "#1f77b4", _FOREST: "#8c8c8c"}


def plot_class_bars(
    values: Mapping[str, Sequence[float | None]],
    class_names: Sequence[str],
    path: Path,
    *,
    errors: Mapping[str, Sequence[float | None]] | None = None,
    title: str,
) -> Path:
    """Grouped bars of a per-class score, one bar per model (optional error bars)."""
    fig = new_figure(figsize=(1.4 * len(class_names) + 2.5, 3.6))
    ax = fig.subplots()
    width = 0.8 / max(len(values), 1)
    for m, (name, scores) in enumerate(values.items()):
        xs = [i + (m - (len(values) - 1) / 2) * width for i in range(len(class_names))]
        ys = [v if v is not None else 0.0 for v in scores]
        err = None
        if errors is not None and name in errors:
            err = [e if e is not None else 0.0 for e in errors[name]]
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=name, color=_COLOURS.get(name))
        for x, v in zip(xs, scores, strict=True):
            ax.text(x, (v or 0.0) + 0.01, "n/a" if v is None else f"{v:.2f}", ha="center",
                    va="bottom", fontsize=7)  # fmt: skip
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set(ylim=(0, 1.08), ylabel="IoU", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _diff(a: float | None, b: float | None) -> str:
    return f"{a - b:+.3f}" if a is not None and b is not None else "n/a"


def baseline_section(tmp: Path, metrics: Mapping[str, Any]) -> _Section:
    """The model and the forest on the same evaluated pixels: table and per-class IoU bars."""
    rf = metrics["baseline"]
    names = list(metrics.get("classes") or metrics["per_class"])
    rows_spec: list[tuple[str, Any]] = [
        ("mean IoU", lambda m: m["mean"]["iou"]),
        ("mean F1", lambda m: m["mean"]["f1"]),
        ("overall accuracy", lambda m: m["overall_accuracy"]),
    ]
    rows_spec += [(f"IoU {n}", lambda m, n=n: m["per_class"][n]["iou"]) for n in names]
    rows = [[label, _fmt(get(metrics)), _fmt(get(rf)), _diff(get(metrics), get(rf))]
            for label, get in rows_spec]  # fmt: skip
    about = rf.get("baseline") or {}
    blocks: list[str | _Table | list[_Image]] = [
        f"A per-pixel random forest ({about.get('trees', '?')} trees on the raw band values of "
        f"{_fmt(about.get('train_pixels'))} labelled pixels of the train chips) predicted the "
        f"same scene and was scored by the same function on the same "
        f"{_fmt(metrics.get('pixels_evaluated'))} pixels ({metrics.get('scored') or 'reference'})."
    ]
    blocks.append(
        _Table(["metric", _MODEL, _FOREST, "difference"], rows, caption="Model vs forest")
    )
    per_class = {
        _MODEL: [metrics["per_class"][n]["iou"] for n in names],
        _FOREST: [rf["per_class"][n]["iou"] for n in names],
    }
    plot_class_bars(per_class, names, tmp / "baseline_iou.png", title="IoU per class, same pixels")
    blocks.append([_Image("baseline_iou.png", "IoU per class: model vs random forest")])
    return _Section("Model vs random forest", blocks)


def cross_validation_section(tmp: Path, cv: Mapping[str, Any], classes: Sequence[str]) -> _Section:
    """Mean +- std over the spatial folds of every metric, the model beside the forest."""
    summary = cv["summary"]
    models = [(m, label) for m, label in (("unet", _MODEL), ("random_forest", _FOREST))
              if m in summary]  # fmt: skip

    def cell(model: str, key: str) -> str:
        s = summary[model].get(key) or {}
        if s.get("mean") is None:
            return "n/a"
        return f"{s['mean']:.3f} ± {s['std']:.3f}" if s.get("std") is not None else _fmt(s["mean"])

    keys = ["miou", "mf1", "oa", *(f"iou_{n}" for n in classes), *(f"f1_{n}" for n in classes)]
    labels = {"miou": "mean IoU", "mf1": "mean F1", "oa": "overall accuracy"}
    rows = [[labels.get(k, k.replace("_", " ")), *(cell(m, k) for m, _ in models)] for k in keys]
    blocks: list[str | _Table | list[_Image]] = [
        f"{cv['folds']} spatially disjoint folds of split blocks (chips overlapping another fold "
        f"are buffered); each fold is tested once, scored on {cv.get('scored', 'its chips')}; "
        f"mean ± {cv.get('std', 'standard deviation')}."
    ]
    blocks.append(_Table(["metric", *(label for _, label in models)], rows,
                         caption="Cross-validation (mean ± std over folds)"))  # fmt: skip
    means = {label: [(summary[m].get(f"iou_{n}") or {}).get("mean") for n in classes]
             for m, label in models}  # fmt: skip
    stds = {label: [(summary[m].get(f"iou_{n}") or {}).get("std") for n in classes]
            for m, label in models}  # fmt: skip
    plot_class_bars(means, classes, tmp / "cv_iou.png", errors=stds,
                    title=f"IoU per class, {cv['folds']}-fold mean ± std")  # fmt: skip
    blocks.append([_Image("cv_iou.png", "IoU per class over the spatial folds")])
    return _Section("Spatial cross-validation", blocks)


def yardstick_sections(tmp: Path, metrics: Mapping[str, Any]) -> list[_Section]:
    """Model vs forest and the cross-validation, when ``metrics`` holds them."""
    sections = []
    if metrics.get("baseline"):
        sections.append(baseline_section(tmp, metrics))
    if metrics.get("cross_validation"):
        names = list(metrics.get("classes") or metrics.get("per_class", {}))
        sections.append(cross_validation_section(tmp, metrics["cross_validation"], names))
    return sections
