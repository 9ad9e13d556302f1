"""Checks of a whole job before its first stage runs: inputs, bands, options, output folder.

A job that will fail in ``predict`` or ``evaluate`` should say so before ``tile`` and ``train``
spend minutes (or GPU hours). :func:`check_job` reads file headers only (rasters through
:func:`geounet.raster.open_scene`, vector layers through ``pyogrio.read_info``), checks what
each stage will be given without training anything, and reports every problem at once, each
with the job key it is about and a fix.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geounet._resolution import check_scene_resolution
from geounet.classes import ClassMap, ClassScheme
from geounet.config import JobConfig
from geounet.errors import GeounetError, JobCheckError
from geounet.labels import RASTER_SUFFIXES
from geounet.raster import SceneInfo, _open, open_scene, select_bands

_ALLOW = "predict.allow_resolution_mismatch: true (--set predict.allow_resolution_mismatch=true)"


def check_job(job: JobConfig, source: str = "job") -> None:
    """Check a job's inputs, bands and options before anything runs.

    Checked: every input path (scene, labels, class map, predict scenes, evaluation reference)
    exists and opens; the labels' class column; every predict scene has the tile scene's bands
    (what the model will be trained on) and a pixel size within 1.5x of it (compared in
    metres); the chip sizes fit the scene and the model (a valid-padding U-Net's input sizes,
    the crop size); the predict overlap is smaller than its chip; the class names the evaluate
    and vectorize sections name exist; a GPU asked for is there (and TensorBoard when asked
    for); the job folder can be written.

    Args:
        job: The job (:func:`geounet.config.load_job_config`).
        source: What to name in the message (the job file).

    Raises:
        JobCheckError: Every problem found, each naming its key, file and fix.
    """
    problems: list[str] = []

    def guard(key: str, check: Callable[[], Any]) -> Any:
        try:
            return check()
        except GeounetError as exc:
            problems.append(f"{key}: {exc}")
            return None

    class_map = guard("tile.class_map", lambda: _class_map(job))
    scheme = class_map.scheme if class_map is not None else ClassScheme.default()
    opened = []
    for key, files, labels in _tile_scenes(job):
        info = guard(
            f"{key}.scene" if key else "tile.scene", lambda f=files: _open_tile_scene(job, f)
        )
        _check_labels(job, labels, f"{key}.labels" if key else "tile.labels", class_map, problems)
        if info is not None:
            opened.append((key, info))
    scene = opened[0][1] if opened else None
    for key, info in opened[1:]:  # one model learns every scene: the first one's bands
        guard(f"{key}.scene", lambda i=info: _check_same_bands(scene, i))  # type: ignore[arg-type]
    # The smallest scene is the one a chip size can be too large for.
    small = min((i for _, i in opened), key=lambda i: min(i.shape), default=None)
    _check_chip_sizes(job, small, problems)
    predicted = scene
    if job.predict.scene is not None:
        predicted = guard("predict.scene", lambda: open_scene(job.predict.scene or []))
    if predicted is not None and scene is not None:
        guard("predict.scene", lambda: _check_predict_scene(job, scene, predicted))
    _check_evaluate(job, class_map, problems)
    if job.tile.scenes is not None and job.predict.scene is not None and not job.evaluate.reference:
        # The split labels lie on each tiled scene's grid; another scene has none of them.
        problems.append(
            "predict.scene: a job of several tile.scenes scores each of them on its own split "
            "labels; to predict another scene, also give evaluate.reference (its labels), or "
            "drop predict.scene to predict every tiled scene."
        )
    _check_environment(job, problems)
    names = [("vectorize.classes", job.vectorize.classes)]
    names.append(("evaluate.object_classes", job.evaluate.object_classes))
    for key, wanted in names:
        for name in [n for n in wanted or [] if n not in scheme.names]:
            problems.append(f"{key}: unknown class {name!r}; the job's classes are {scheme.names}.")
    guard("out", lambda: _check_writable(Path(job.out)))
    if problems:
        raise JobCheckError(source, problems)


def _tile_scenes(job: JobConfig) -> list[tuple[str, list[Path], Path | None]]:
    """``(key, files, labels)`` of each tiled scene; key ``""`` for a one-scene job."""
    tile = job.tile
    if tile.scenes is None:
        return [("", list(tile.scene or []), tile.labels)]
    labels = tile.scene_labels()
    return [(f"tile.scenes[{s.name}]", list(s.scene), labels[s.name]) for s in tile.scenes]


def _open_tile_scene(job: JobConfig, files: list[Path]) -> SceneInfo:
    """A tile scene as the tile stage reads it: ``tile.bands`` selected (a missing one fails)."""
    info = open_scene(files)
    return select_bands(info, job.tile.bands) if job.tile.bands is not None else info


def _check_same_bands(first: SceneInfo, scene: SceneInfo) -> None:
    from geounet.modelfile import check_scene_bands

    check_scene_bands(first.bands, scene.bands, ", ".join(scene.paths))


def _class_map(job: JobConfig) -> ClassMap | None:
    if job.tile.class_map is None:
        return None
    from geounet.errors import InputFileError

    if not Path(job.tile.class_map).is_file():
        raise InputFileError(f"class map {job.tile.class_map} does not exist; check the path.")
    return ClassMap.from_yaml(job.tile.class_map)


def _check_labels(
    job: JobConfig, labels: Path | None, key: str, class_map: ClassMap | None, problems: list[str]
) -> None:
    if labels is None:
        problems.append(
            f"{key}: a job trains a model, so the tile stage needs labels; add "
            "`labels:` (polygons or a class raster) to the tile section."
        )
        return
    path = Path(labels)
    if not path.exists():
        problems.append(f"{key}: label file {path} does not exist; check the path.")
        return
    if path.suffix.lower() in RASTER_SUFFIXES:
        try:
            with _open(path) as src:
                if src.crs is None:
                    problems.append(
                        f"{key}: label raster {path} has no CRS; assign one "
                        "(gdal_edit.py -a_srs EPSG:XXXX)."
                    )
        except GeounetError as exc:
            problems.append(f"{key}: {exc}")
        return
    import pyogrio

    try:
        fields = list(pyogrio.read_info(path)["fields"])
    except Exception as exc:  # pyogrio raises several DataSource error types
        problems.append(
            f"{key}: cannot read {path} as vector data ({exc}); expected a GeoPackage, "
            "GeoJSON or Shapefile of polygons."
        )
        return
    column = job.tile.class_column or (class_map.column if class_map is not None else None)
    if column is None:
        problems.append(
            f"tile.class_column: no class column given for {path}; set one of {fields}."
        )
    elif column not in fields:
        problems.append(
            f"tile.class_column: {path} has no column {column!r}; its columns are {fields}."
        )


def _check_chip_sizes(job: JobConfig, scene: SceneInfo | None, problems: list[str]) -> None:
    tile, train, predict = job.tile, job.train, job.predict
    if scene is not None and tile.edge != "pad" and tile.chip_size > min(scene.shape):
        problems.append(
            f"tile.chip_size: {tile.chip_size} px is larger than the scene ({scene.shape[0]} x "
            f"{scene.shape[1]} px); use chip_size <= {min(scene.shape)} or edge: pad."
        )
    crop = train.augment.crop_size
    if crop is not None and crop > tile.chip_size:
        problems.append(
            f"train.augment.crop_size: {crop} px is larger than the chips "
            f"(tile.chip_size {tile.chip_size}); use a crop_size <= {tile.chip_size}."
        )
    chip = predict.chip_size or tile.chip_size
    overlap = predict.overlap if predict.overlap is not None else chip // 4
    if overlap >= chip:
        problems.append(
            f"predict.overlap: {overlap} px must be smaller than the predict chip size {chip} "
            f"(the stride would be {chip - overlap}); use e.g. overlap: {chip // 4}."
        )
    sizes = {"tile.chip_size": tile.chip_size, "train.augment.crop_size": crop}
    sizes["predict.chip_size"] = predict.chip_size
    _check_model_sizes(job, {k: v for k, v in sizes.items() if v is not None}, problems)


def _check_model_sizes(job: JobConfig, sizes: dict[str, int], problems: list[str]) -> None:
    """The model options are valid, and a valid-padding model accepts every chip size."""
    from geounet.models import Padding, model_config, valid_output_size

    model = job.train.model
    try:
        config = model_config(model.name, **model.options)
    except GeounetError as exc:
        problems.append(f"train.model: {exc}")
        return
    except (TypeError, ValueError) as exc:
        problems.append(f"train.model.options: {exc}")
        return
    if getattr(config, "padding", None) != Padding.VALID:
        return  # same padding pads any input to the model's multiple itself
    for key, size in sizes.items():
        try:
            valid_output_size(size, depth=config.depth)
        except GeounetError as exc:
            problems.append(f"{key}: {exc}")


def _check_environment(job: JobConfig, problems: list[str]) -> None:
    """A GPU asked for is there, and so is TensorBoard when it is asked for."""
    import importlib.util

    import torch

    gpu = torch.cuda.is_available()
    if job.predict.device == "cuda" and not gpu:
        problems.append("predict.device: cuda, but torch sees no GPU; use device: auto or cpu.")
    if job.train.accelerator in ("gpu", "cuda") and not gpu:
        problems.append(
            f"train.accelerator: {job.train.accelerator}, but torch sees no GPU; use "
            "accelerator: auto or cpu."
        )
    if job.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        problems.append(
            "train.tensorboard: true needs the tensorboard package (pip install tensorboard), "
            "or set it to false."
        )


def _check_predict_scene(job: JobConfig, tiled: SceneInfo, scene: SceneInfo) -> None:
    """The model is trained on the tile scene's bands and pixel size; predict must match.

    As predict does: ``predict.bands`` selected, then the model's bands picked by name.
    """
    from geounet.inference import scene_for_model

    scene_for_model(scene, tiled.bands, job.predict.bands)
    check_scene_resolution(
        tiled.res, tiled.crs.to_string(), scene,
        allow=job.predict.allow_resolution_mismatch, option=_ALLOW,
    )  # fmt: skip


def _check_evaluate(job: JobConfig, class_map: ClassMap | None, problems: list[str]) -> None:
    reference = job.evaluate.reference
    if reference is None:
        return
    path = Path(reference)
    if not path.exists():
        problems.append(f"evaluate.reference: reference {path} does not exist; check the path.")
        return
    if path.suffix.lower() in RASTER_SUFFIXES:
        try:
            with _open(path) as src:
                if src.crs is None:
                    problems.append(f"evaluate.reference: {path} has no CRS; assign one first.")
        except GeounetError as exc:
            problems.append(f"evaluate.reference: {exc}")
        return
    import pyogrio

    try:
        fields = list(pyogrio.read_info(path)["fields"])
    except Exception as exc:  # pyogrio raises several DataSource error types
        problems.append(f"evaluate.reference: cannot read {path} as vector data ({exc}).")
        return
    # The evaluate stage reads polygons with the tile stage's class map and column.
    column = None
    if class_map is not None:
        column = job.tile.class_column or class_map.column
    if column is None:
        problems.append(
            f"evaluate.reference: polygons {path} need a class column, which a job takes from "
            f"tile.class_column with tile.class_map; set both (its columns are {fields})."
        )
    elif column not in fields:
        problems.append(
            f"evaluate.reference: {path} has no column {column!r} (the tile class column); its "
            f"columns are {fields}."
        )


def _check_writable(out: Path) -> None:
    """``out`` (or the folder that will hold it) accepts new files."""
    from geounet.errors import OutputError

    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{existing} is a file, not a folder; choose another job folder (out).")
    if existing != out:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(
                f"cannot create {out}: {existing} is not writable; choose another job folder."
            )
        return
    try:
        # A real write: os.access misses read-only mounts seen through some file systems.
        with tempfile.NamedTemporaryFile(dir=out, prefix=".geounet-check-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write into the job folder {out}: {exc.strerror}; fix its permissions or "
            "choose another out."
        ) from exc
