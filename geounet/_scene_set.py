"""A set of scenes tiled into one chips folder: the scene records and the checks they pass.

:func:`geounet.tiling.tile_scene_set` opens each :class:`SceneSource` into a
:class:`PreparedScene`, checks with :func:`check_scene_set` that the scenes can train one model
and records each in ``tiling.json`` with :func:`scene_entry`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from geounet._chip_index import BUFFER_SPLIT, SPLITS
from geounet.classes import ClassMap
from geounet.errors import BandMismatchError, ConfigError, GridMismatchError
from geounet.grid import ChipGrid
from geounet.labels import LabelSource, label_summary
from geounet.raster import SceneInfo

log = logging.getLogger(__name__)


def count_splits(records: list[dict[str, Any]]) -> dict[str, int]:
    """Chips per split (and buffer) among chip records."""
    return {s: sum(r["split"] == s for r in records) for s in (*SPLITS, BUFFER_SPLIT)}


SplitName = Literal["train", "val", "test"]


@dataclass(frozen=True)
class SceneSource:
    """One scene of a multi-scene tiling (:func:`geounet.tiling.tile_scene_set`).

    Attributes:
        paths: One multi-band raster, or single-band files stacked in order.
        name: The scene's name: the prefix of its chip ids, its value in the index's ``scene``
            column and its folder name in a job (letters, digits, ``_ . -``); ``None``: the
            file name (:attr:`geounet.raster.SceneInfo.name`).
        labels: Its vector polygons or class raster (``None``: images only).
        split: The split every chip of the scene goes to (a whole scene held out);
            ``None``: spatial blocks within the scene (:func:`geounet.tiling.assign_splits`).
    """

    paths: str | Path | tuple[str | Path, ...]
    name: str | None = None
    labels: str | Path | None = None
    split: SplitName | None = None

    def __post_init__(self) -> None:
        if self.name is not None and not _SCENE_NAME.fullmatch(self.name):
            raise ConfigError(
                f"scene name {self.name!r} cannot name chips and folders; use letters, digits, "
                "'_', '.' and '-' (starting with a letter or digit)."
            )
        if self.split is not None and self.split not in SPLITS:
            raise ConfigError(f"scene {self.name!r}: unknown split {self.split!r}; use {SPLITS}.")


_SCENE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class PreparedScene:
    """A scene opened and checked, ready to be cut: its grid, labels, name and split rule."""

    scene: SceneInfo
    grid: ChipGrid
    labels: LabelSource | None
    name: str
    split: SplitName | None
    seed: int


def check_scene_set(prepared: list[PreparedScene], maps: list[ClassMap]) -> None:
    """Refuse scenes that cannot share one chips folder (one model): all before any chip."""
    first = prepared[0]
    names = [p.name for p in prepared]
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise ConfigError(
            f"scene names {doubles} are given to more than one scene; give each scene its own "
            "`name` (chip ids and job folders are named after it)."
        )
    if len({p.labels is None for p in prepared}) > 1:
        bare = [p.name for p in prepared if p.labels is None]
        raise ConfigError(
            f"scenes {bare} have no labels while the others do; give every scene labels."
        )
    for p, cmap in zip(prepared[1:], maps[1:], strict=True):
        what = f"scene {p.name!r} ({p.scene.paths[0]})"
        if p.scene.bands != first.scene.bands or p.scene.dtype != first.scene.dtype:
            raise BandMismatchError(
                f"{what} has bands {list(p.scene.bands)} ({p.scene.dtype}); the first scene "
                f"{first.name!r} has {list(first.scene.bands)} ({first.scene.dtype}). Scenes "
                "of one chips folder train one model: give them the same bands in the same "
                "order and data type (gdal_translate -b ... -ot ...)."
            )
        if not all(
            math.isclose(a, b, rel_tol=1e-6)
            for a, b in zip(p.scene.res, first.scene.res, strict=True)
        ):
            raise GridMismatchError(
                f"{what} has {p.scene.res} pixels; the first scene {first.name!r} has "
                f"{first.scene.res}. Resample it to one pixel size first "
                f"(gdalwarp -tr {first.scene.res[0]} {first.scene.res[1]} -r bilinear)."
            )
        if cmap.scheme.to_dict() != maps[0].scheme.to_dict():
            raise ConfigError(
                f"the labels of {what} bring the classes {cmap.scheme.names}, those of "
                f"{first.name!r} {maps[0].scheme.names}; give a class_map so every scene maps "
                "to the same classes."
            )
    _warn_overlaps(prepared)


def _warn_overlaps(prepared: list[PreparedScene]) -> None:
    """Log scenes whose footprints overlap: their shared ground may fall into two splits."""
    if len(prepared) < 2:
        return
    from rasterio.warp import transform_bounds
    from shapely.geometry import box

    crs = prepared[0].scene.crs
    boxes = [box(*transform_bounds(p.scene.crs, crs, *p.scene.bounds)) for p in prepared]
    for i in range(len(prepared)):
        for j in range(i + 1, len(prepared)):
            shared = boxes[i].intersection(boxes[j]).area
            if shared > 0:
                log.warning(
                    "scenes %r and %r overlap (%.4g square CRS units in %s): chips of the same "
                    "ground can land in different splits; cut the scenes apart for a clean "
                    "hold-out.",
                    prepared[i].name, prepared[j].name, shared, crs.to_string(),
                )  # fmt: skip


def scene_entry(prepared: PreparedScene, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``tiling.json`` record of one scene of the set."""
    return {
        "name": prepared.name,
        "scene": prepared.scene.to_dict(),
        "labels": label_summary(prepared.labels) if prepared.labels is not None else None,
        "split": prepared.split or "blocks",
        "seed": prepared.seed,
        "chips": {
            "grid": len(prepared.grid),
            "written": len(records),
            "skipped_nodata": len(prepared.grid) - len(records),
        },
        "splits": count_splits(records),
    }
