"""The building blocks of a report page (tables, images, sections) and number formatting.

Shared by :mod:`geounet.report` and the yardstick sections of :mod:`geounet._report_baseline`,
so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[list[str]]
    caption: str | None = None


@dataclass(frozen=True)
class _Image:
    src: str
    caption: str


@dataclass(frozen=True)
class _Section:
    heading: str
    blocks: list[str | _Table | list[_Image]] = field(default_factory=list)


def _fmt(value: Any, digits: int = 3) -> str:
    """A score (3 decimals), a count (thousands separators) or ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
