"""The chip index of a chips folder (``index.gpkg``) and the split label rasters drawn from it.

:mod:`geounet.tiling` writes the index and re-exports :func:`read_index` and
:func:`write_split_labels`; they live here so the tiler stays small.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS

from geounet._files import staged_file, write_errors
from geounet._qml import categorized_fill_qml, write_gpkg_style
from geounet.chips import ChipsFolder
from geounet.classes import SCHEME_TAG, ClassScheme
from geounet.errors import ConfigError, InputFileError
from geounet.grid import Grid
from geounet.raster import check_raster, read_band, write_chip

SPLITS = ("train", "val", "test")
BUFFER_SPLIT = "buffer"
"""Split name of chips dropped from every split because they overlap a chip of another split."""

SPLIT_COLOURS = {
    "train": (46, 160, 67),
    "val": (31, 119, 180),
    "test": (255, 127, 14),
    BUFFER_SPLIT: (150, 150, 150),
}  # fmt: skip


def write_index(path: Path, records: list[dict[str, Any]], scene_crs: Mapping[str, CRS]) -> None:
    """Write ``index.gpkg`` (layer ``chips``) in the CRS of the first scene of ``scene_crs``."""
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    crs = next(iter(scene_crs.values()))
    frames = []
    for name, own_crs in scene_crs.items():
        mine = [r for r in records if r["scene"] == name]
        if not mine:
            continue
        rows = [{k: v for k, v in r.items() if k != "bounds"} for r in mine]
        frame = gpd.GeoDataFrame(rows, geometry=[box(*r["bounds"]) for r in mine], crs=own_crs)
        # One layer has one CRS: footprints of scenes in another CRS are reprojected (the chips
        # themselves keep their scene's CRS and grid).
        frames.append(frame if own_crs == crs else frame.to_crs(crs))
    frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=crs)
    order = ["chip_id", "scene", "split", "image", "label"]
    frame = frame[[c for c in order if c in frame] + [c for c in frame if c not in order]]
    # GeoPackage 1.2: GDAL 3.10 writes 1.4 by default, which QGIS 3.22's GDAL warns about.
    # Chips drawn as see-through squares coloured by split, so the imagery stays visible.
    qml = categorized_fill_qml(
        ClassScheme.default(), attr="split", values=SPLIT_COLOURS, fill_alpha=60
    )
    with write_errors(path):
        frame.to_file(path, layer="chips", driver="GPKG", dataset_options={"VERSION": "1.2"})
        write_gpkg_style(path, "chips", qml, "splits")


def read_index(chips_dir: str | Path) -> Any:
    """Read a chips folder's ``index.gpkg`` as a GeoDataFrame (layer ``chips``)."""
    return ChipsFolder(Path(chips_dir)).index()


def scene_entries(chips_dir: str | Path) -> list[dict[str, Any]]:
    """The scenes of a chips folder: ``name``, ``scene`` (its grid), ``split`` and ``splits``.

    A folder tiled before scenes were recorded holds one, named after its scene.

    Raises:
        InputFileError: The folder lacks a readable ``tiling.json``.
    """
    return ChipsFolder.open(chips_dir).scenes()


def write_split_labels(
    chips_dir: str | Path, split: str, out_path: str | Path, *, scene: str | None = None
) -> Path:
    """Write a class raster on a scene's grid holding the label chips of one split only.

    Evaluating a whole-scene prediction against every label would also score the pixels the
    model was trained on; this raster keeps the held-out split's labels and marks every other
    pixel 255 (ignored), so ``evaluate_prediction(classes, out_path)`` scores that split alone.

    Args:
        chips_dir: A chips folder with labels (written by :func:`geounet.tiling.tile_scene`
            or :func:`geounet.tiling.tile_scene_set`).
        split: ``train``, ``val`` or ``test``.
        out_path: The GeoTIFF to write (the scene's CRS and transform, uint8, nodata 255, the
            class scheme in its ``GEOUNET_CLASSES`` tag); written under a temporary name and
            renamed.
        scene: Which scene of a multi-scene folder (its name); ``None`` for a one-scene one.

    Returns:
        ``out_path``.

    Raises:
        ConfigError: An unknown split or scene, or no ``scene`` for a multi-scene folder.
        InputFileError: The chips folder lacks labels or its ``tiling.json``.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {SPLITS}.")
    folder = ChipsFolder.open(chips_dir)
    chips = folder.path
    if not folder.tiling.get("labels"):
        raise InputFileError(f"chips folder {chips} has no labels; tile with --labels.")
    entries = folder.scenes()
    names = [e["name"] for e in entries]
    if scene is None and len(entries) > 1:
        raise ConfigError(f"chips folder {chips} holds the scenes {names}; say which one.")
    if scene is not None and scene not in names:
        raise ConfigError(f"chips folder {chips} has no scene {scene!r}; its scenes are {names}.")
    entry = entries[0] if scene is None else entries[names.index(scene)]
    grid = Grid.from_dict(entry["scene"])
    scheme = folder.classes
    height, width = grid.shape
    ignore = np.uint8(scheme.ignore_index)
    mask = np.full((height, width), ignore, dtype=np.uint8)
    index = read_index(chips)
    chosen = index["split"] == split
    if "scene" in index and len(entries) > 1:  # folders before the column held one scene
        chosen &= index["scene"] == entry["name"]
    for rec in index[chosen].itertuples():
        data = read_band(chips / rec.label)
        rows = slice(rec.row_off, rec.row_off + rec.height)
        cols = slice(rec.col_off, rec.col_off + rec.width)
        mask[rows, cols] = np.where(data != ignore, data, mask[rows, cols])
    out = Path(out_path)
    with staged_file(out) as tmp:
        write_chip(
            tmp, mask[None], crs=grid.crs, transform=grid.transform,
            nodata=int(ignore), compress="deflate", tags={SCHEME_TAG: json.dumps(scheme.to_dict())},
        )  # fmt: skip
        check_raster(tmp)
    return out
