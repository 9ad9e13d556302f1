"""The ``--nodata`` option shared by ``geounet tile`` and ``geounet predict``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

NODATA_HELP = (
    "Nodata of the scene files, replacing what they declare (e.g. 0 for Sentinel-2 files that "
    "do not say so): one value for every band, or one per band separated by commas, 'none' "
    "keeping a band's own (-99999,-32768,none). Masks, alpha bands and NaN stay nodata too."
)


def parse_nodata(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> float | tuple[float | None, ...] | None:
    """``"0"`` -> 0.0, ``"-99999,none"`` -> (-99999.0, None); None when not given."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    try:
        values = tuple(None if p.lower() in ("none", "") else float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(
            f"expected a number or comma-separated numbers / 'none' per band, got {value!r}"
        ) from None
    if len(values) == 1:
        return values[0]
    return values


def nodata_option(suffix: str = "") -> Callable[[F], F]:
    """Add ``--nodata`` (``suffix`` completes its help, e.g. with the command's default)."""
    return click.option(
        "--nodata", callback=parse_nodata, metavar="VALUE[,VALUE...]", help=NODATA_HELP + suffix
    )
