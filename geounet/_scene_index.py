"""The index page of a job of several scenes: one row per scene, the pooled scores, links.

``report/index.md`` and ``report/index.html`` sit beside the per-scene reports
(``report/<scene>/report.html``), so a job of many scenes has one page to start from.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geounet._files import write_text_atomic


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_scene_index(
    folder: Path, title: str, pooled: Mapping[str, Any] | None, scenes: list[str]
) -> Path:
    """Write ``index.md`` and ``index.html`` into ``folder``; returns the HTML path.

    Args:
        folder: The report folder holding one ``<scene>/report.html`` per scene.
        title: The job's report title.
        pooled: The pooled ``evaluate/metrics.json`` (its ``scenes`` hold each scored scene's
            mean IoU, overall accuracy and pixel count); ``None`` when nothing was scored.
        scenes: Every predicted scene, in job order (unscored ones get a row without scores).
    """
    scored = dict((pooled or {}).get("scenes", {}))
    head = ["scene", "mIoU", "overall accuracy", "pixels scored", "report"]
    rows = []
    for name in scenes:
        m = scored.get(name)
        rows.append([
            name,
            _fmt(m["mean"]["iou"]) if m else "not scored",
            _fmt(m["overall_accuracy"]) if m else "-",
            f"{m['pixels_evaluated']:,}" if m else "-",
            f"{name}/report.html",
        ])  # fmt: skip
    if pooled is not None:
        rows.append([
            "all scored scenes (pooled)", _fmt(pooled["mean"]["iou"]),
            _fmt(pooled["overall_accuracy"]), f"{pooled['pixels_evaluated']:,}", "",
        ])  # fmt: skip
    scored_what = (pooled or {}).get("scored", "no scene was scored")
    md = [f"# {title}", "", f"Scored: {scored_what}.", "", "| " + " | ".join(head) + " |"]
    md.append("|" + "---|" * len(head))
    md += ["| " + " | ".join(r[:4] + [f"[report]({r[4]})" if r[4] else ""]) + " |" for r in rows]
    write_text_atomic(folder / "index.md", "\n".join(md) + "\n")
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = [f"<tr>{cells}</tr>"]
    for r in rows:
        link = f'<a href="{html.escape(r[4])}">report</a>' if r[4] else ""
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in r[:4])
        body.append(f"<tr>{tds}<td>{link}</td></tr>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>\n<h1>{html.escape(title)}</h1>\n"
        f"<p>Scored: {html.escape(scored_what)}.</p>\n<table>\n" + "\n".join(body) + "\n</table>\n"
        "</body></html>\n"
    )
    return write_text_atomic(folder / "index.html", page)
