"""Predict or tile many scenes as tasks on dask.distributed: a local cluster or a real one.

Each scene is one task running the same function a single-process run calls
(:func:`~geounet.inference.predict_scene`, :func:`~geounet.tiling.tile_scene`), so its outputs
are those of ``geounet predict SCENE`` / ``geounet tile SCENE`` exactly. Output layout::

    OUT/<scene-stem>/   the scene's outputs: classes.tif, classes.qml, preview.png (and
                        probabilities.tif) for predict; a complete chips folder for tile
    OUT/run.json        per scene: status (ok/failed), seconds, outputs, error and traceback

A scene's stem is its file name without the suffix; a scene stacked from band files takes the
files' common stem without the band token (``T33UUU_20170216_B02.jp2`` -> ``T33UUU_20170216``).

Every scene is opened and checked (files exist, CRS, bands against the model) before any task
is submitted. A task that raises is retried ``retries`` times; a task whose worker dies is
re-run on another worker by the scheduler (up to ``distributed.scheduler.allowed-failures``).
A scene that still fails is reported in the result and ``run.json``; the others' outputs stay.

The model is shipped once per worker, not per scene: a worker plugin carries the model file's
bytes, loads them once per worker process and keeps the model for every scene of the run.

One huge mosaic (say a VRT of hundreds of scenes) given to :func:`predict_scenes` is one task:
:func:`predict_scene` streams it with memory bounded by a strip of chips. To spread one mosaic
over many workers as one seamless map, use :func:`geounet.mosaic.predict_mosaic` (``geounet
predict --mosaic``): it cuts the map into blocks whose pixels equal the single-process run's.

dask is imported inside the functions, so ``import geounet.distributed`` stays light.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from glob import escape as glob_escape
from glob import glob
from pathlib import Path
from typing import Any, Literal

from geounet import __version__
from geounet._files import write_errors, write_text_atomic
from geounet._paths import gdal_path, is_virtual, stem_of
from geounet.errors import ConfigError, GeounetError, InputFileError, OutputError
from geounet.raster import scene_name_from_paths

log = logging.getLogger(__name__)

SceneInput = str | Path | Sequence[str | Path]
"""One scene: a raster (GeoTIFF/COG/VRT), or the single-band files stacked into it."""

SUMMARY_NAME = "run.json"
_TILE_KWARGS = frozenset({"labels", "class_map", "class_column", "overwrite"})
# What a scene task writes before publishing: the stage's work folder beside the scene's
# output folder (geounet._files.staged_output), which a worker killed mid-scene leaves behind.
_STAGING = ".{name}.work-*"


@dataclass(frozen=True)
class ClusterOptions:
    """Where the scene tasks run.

    Attributes:
        workers: Worker processes of a new local cluster (``None``: one per CPU, at most one
            per scene; one when predicting on a GPU).
        scheduler: Address of a running scheduler (``tcp://host:8786``) or a
            ``distributed.Client`` to use; excludes ``workers``.
        retries: Times a scene whose task raised is run again.
        threads_per_worker: Tasks one local worker runs at once (each task already uses
            several threads: GDAL decoding, torch, chip readers).
    """

    workers: int | None = None
    scheduler: Any = None
    retries: int = 1
    threads_per_worker: int = 1

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}.")
        if self.workers is not None and self.scheduler is not None:
            raise ConfigError(
                "give either workers (a local cluster) or scheduler (a running one), not both."
            )
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}.")
        if self.threads_per_worker < 1:
            raise ConfigError(f"threads_per_worker must be >= 1, got {self.threads_per_worker}.")


@dataclass(frozen=True)
class SceneRun:
    """The outcome of one scene's task.

    Attributes:
        name: The scene stem, also its output folder's name.
        paths: The scene's file(s).
        out_dir: ``OUT/<name>``.
        status: ``"ok"`` or ``"failed"``.
        seconds: Task time on the worker (``None`` when it failed).
        outputs: Output kind -> path (``classes``, ``probabilities``, ``chips``, ...).
        error: ``"ExceptionType: message"`` when it failed.
        traceback: The worker-side traceback when it failed.
    """

    name: str
    paths: tuple[str, ...]
    out_dir: Path
    status: Literal["ok", "failed"]
    seconds: float | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written to ``run.json``."""
        return {
            "name": self.name,
            "paths": list(self.paths),
            "out_dir": str(self.out_dir),
            "status": self.status,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "outputs": dict(self.outputs),
            "error": self.error,
            "traceback": self.traceback,
        }


@dataclass(frozen=True)
class ScenesResult:
    """What :func:`predict_scenes` or :func:`tile_scenes` did, scene by scene (input order).

    Attributes:
        out_dir: The output folder.
        runs: One :class:`SceneRun` per scene.
        summary: The ``run.json`` written.
        seconds: Wall time of the whole run (cluster start included).
    """

    out_dir: Path
    runs: tuple[SceneRun, ...]
    summary: Path
    seconds: float

    @property
    def ok(self) -> bool:
        """Whether every scene succeeded."""
        return all(r.status == "ok" for r in self.runs)

    @property
    def failed(self) -> tuple[SceneRun, ...]:
        """The scenes that failed."""
        return tuple(r for r in self.runs if r.status == "failed")


def resolve_scenes(values: Sequence[str | Path]) -> list[tuple[str, ...]]:
    """Expand ``--scenes`` values into scenes, each a tuple of its file(s).

    Each value is one of:

    - a ``.txt`` list: one scene per line; a line with several paths (whitespace-separated,
      shell quoting for spaces) is one scene stacked from band files; relative paths are
      relative to the list's folder; blank lines and ``#`` comments are skipped;
    - a glob pattern (contains ``*``, ``?`` or ``[``): every match, sorted, is one scene;
    - anything else: one scene file (a GeoTIFF, COG, JP2 or VRT).

    Raises:
        InputFileError: A list file is missing or empty, or a pattern matches nothing.
    """
    scenes: list[tuple[str, ...]] = []
    for value in values:
        text = str(value)
        if text.lower().endswith(".txt"):
            scenes += _read_scene_list(Path(text))
        elif any(c in text for c in "*?["):
            matches = sorted(glob(text, recursive=True))
            if not matches:
                raise InputFileError(f"--scenes pattern {text!r} matches no file; check it.")
            scenes += [(m,) for m in matches]
        else:
            scenes.append((text,))
    return scenes


def _read_scene_list(path: Path) -> list[tuple[str, ...]]:
    """The scenes of a ``.txt`` scene list (see :func:`resolve_scenes`)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputFileError(
            f"cannot read the scene list {path}: {exc.strerror or exc}; give a text file with "
            "one scene per line."
        ) from exc
    scenes = []
    for number, line in enumerate(lines, start=1):
        try:
            parts = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InputFileError(f"{path}, line {number}: {exc} in {line!r}.") from exc
        if parts:
            scenes.append(tuple(_relative_to(p, path.parent) for p in parts))
    if not scenes:
        raise InputFileError(f"the scene list {path} names no scene; write one per line.")
    return scenes


def _relative_to(path: str, folder: Path) -> str:
    if is_virtual(path) or Path(path).is_absolute():
        return gdal_path(path)
    return str(folder / path)


def scene_stem(paths: SceneInput) -> str:
    """The name of a scene's output folder (see the module docstring)."""
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    if len(files) == 1:
        return stem_of(files[0])
    return scene_name_from_paths(files)


def _named_scenes(scenes: Sequence[SceneInput]) -> list[tuple[str, tuple[str, ...]]]:
    """``(stem, files)`` per scene; two scenes may not share an output folder."""
    if isinstance(scenes, str | Path):
        raise ConfigError(
            "scenes must be a list of scenes; for a glob or a .txt list use "
            "geounet.distributed.resolve_scenes(...) first."
        )
    named = []
    for scene in scenes:
        files = (str(scene),) if isinstance(scene, str | Path) else tuple(str(p) for p in scene)
        if not files:
            raise InputFileError("a scene with no file was given; each scene needs a path.")
        named.append((scene_stem(files), files))
    if not named:
        raise InputFileError("no scene given; pass at least one scene.")
    seen: dict[str, tuple[str, ...]] = {}
    for name, files in named:
        if name in seen:
            raise ConfigError(
                f"scenes {list(seen[name])} and {list(files)} would both write into "
                f"OUT/{name}/; give them distinct file names or run them separately."
            )
        seen[name] = files
    return named


def _check_scenes(
    named: Sequence[tuple[str, tuple[str, ...]]], check: Callable[[str, Any], None]
) -> None:
    """Open every scene and run ``check(name, info)``; raise one error naming every bad one."""
    from geounet.raster import open_scene  # noqa: PLC0415

    errors: list[GeounetError] = []
    for name, files in named:
        try:
            check(name, open_scene(files))
        except GeounetError as exc:
            if files[0] not in str(exc):  # e.g. a chip larger than the scene: say which scene
                exc = type(exc)(f"{' + '.join(files)}: {exc}")
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        lines = "\n".join(f"  - {e}" for e in errors)
        raise type(errors[0])(
            f"{len(errors)} of {len(named)} scenes cannot be used; nothing was submitted:\n{lines}"
        )


def _default_workers(n_scenes: int, gpu: bool) -> int:
    from geounet._cluster import local_cpus  # noqa: PLC0415

    return 1 if gpu else max(1, min(n_scenes, local_cpus()))


def _model_plugin(model: Any, metadata: Any) -> tuple[Any, dict[str, Any], str, str]:
    """The model's spec, the :class:`~geounet._cluster.ModelPlugin` arguments, digest and name.

    The digest fingerprints the model: a file's bytes, or a module's class and weights (so a
    rerun with the same weights can reuse finished work). The plugin's name holds a file's
    digest (registering the same file again is a no-op) but is new for every module: two
    modules with equal weights may still differ in code.

    Raises:
        ConfigError: An ONNX file (dask runs the torch engine), or a module without metadata.
        InputFileError, ModelFileError: The model file is missing or unreadable.
    """
    import hashlib  # noqa: PLC0415

    from geounet.inference import ModelSpec  # noqa: PLC0415
    from geounet.modelfile import read_model_metadata  # noqa: PLC0415

    if isinstance(model, str | Path) and Path(model).suffix.lower() == ".onnx":
        raise ConfigError(
            f"{model}: many scenes on dask run the torch engine only; give the .safetensors "
            "model file, or predict the scenes one by one with the onnx engine."
        )
    if isinstance(model, str | Path):
        payload = Path(model).read_bytes() if Path(model).is_file() else b""
        spec = ModelSpec.from_metadata(read_model_metadata(model))  # names a missing file
        digest = hashlib.sha256(payload).hexdigest()
        kwargs = {"payload": payload, "source": str(model)}
        return spec, kwargs, digest, f"geounet-model-{digest[:16]}"
    if metadata is None:
        raise ConfigError(
            "predicting with an nn.Module needs metadata (bands, normalization, classes); "
            "pass metadata=... or a model file path."
        )
    spec = metadata if isinstance(metadata, ModelSpec) else ModelSpec.from_metadata(metadata)
    digest = hashlib.sha256(type(model).__qualname__.encode())
    try:
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    except AttributeError:  # not a torch module: no weights to fingerprint, never reused
        digest.update(uuid.uuid4().bytes)
    name = f"geounet-model-{uuid.uuid4().hex[:16]}"
    return spec, {"module": (model, metadata)}, digest.hexdigest(), name


def predict_scenes(
    model: Any,
    scenes: Sequence[SceneInput],
    out_dir: str | Path,
    *,
    metadata: Any = None,
    options: Any = None,
    cluster: ClusterOptions | None = None,
) -> ScenesResult:
    """Predict many scenes on a dask cluster into ``out_dir/<scene-stem>/``.

    Args:
        model: A model file path (its bytes go to each worker once), or a ``torch.nn.Module``
            (pickled to each worker once; then ``metadata`` is required).
        scenes: The scenes; each a raster path or a sequence of band files (see
            :func:`resolve_scenes` for globs and list files).
        out_dir: Output folder; each scene gets the outputs of
            :func:`~geounet.inference.predict_scene` in its own sub-folder.
        metadata: Bands, normalisation and classes of an ``nn.Module`` model.
        options: A :class:`~geounet.inference.PredictOptions` for every scene.
        cluster: Local workers or a scheduler, and retries (default: a local cluster).

    Returns:
        Per-scene status, seconds and outputs; also written to ``out_dir/run.json``. Failed
        scenes do not raise: check :attr:`ScenesResult.failed`.

    Raises:
        GeounetError: Bad input (a missing or unreadable scene, bands that differ from the
            model's, two scenes with one stem), raised before any task is submitted.
    """
    from geounet.inference import PredictOptions, scene_for_model  # noqa: PLC0415

    options = options or PredictOptions()
    cluster = cluster or ClusterOptions()
    named = _named_scenes(scenes)
    spec, plugin_kwargs, _, plugin_name = _model_plugin(model, metadata)
    chip = options.chip_size or spec.chip_size
    overlap = options.overlap if options.overlap is not None else chip // 4
    if overlap >= chip:
        raise ConfigError(f"overlap {overlap} must be smaller than the chip size {chip}.")
    from geounet._resolution import check_scene_resolution  # noqa: PLC0415

    def check(name: str, info: Any) -> None:
        scene_for_model(info, spec.bands, options.bands)
        check_scene_resolution(spec.res, spec.crs, info, allow=options.allow_resolution_mismatch)

    _check_scenes(named, check)
    out = _prepare_out_dir(Path(out_dir))

    gpu = options.device.startswith("cuda") or (options.device == "auto" and _cuda())
    workers = cluster.workers or _default_workers(len(named), gpu)
    local = cluster.scheduler is None
    if local:  # split the CPUs between the local workers (dask pins each to 1 torch thread)
        from geounet._cluster import local_cpus  # noqa: PLC0415

        plugin_kwargs["torch_threads"] = max(1, local_cpus() // workers)
    start = time.perf_counter()
    from geounet._cluster import ModelPlugin, open_client, predict_task  # noqa: PLC0415

    with open_client(cluster.scheduler, workers, cluster.threads_per_worker) as client:
        try:
            # Loads the model on every worker now: a bad model file fails here, before any task.
            client.register_plugin(ModelPlugin(plugin_name, **plugin_kwargs), name=plugin_name)
            runs = _run(
                client,
                named,
                out,
                lambda name, files: (predict_task, plugin_name, files, str(out / name), options),
                cluster.retries,
                "predict",
            )
        finally:
            if not local:  # a long-lived cluster should not keep the model in memory
                with contextlib.suppress(Exception):
                    client.unregister_worker_plugin(plugin_name)
    _remove_partials(out, [_STAGING.format(name=glob_escape(name)) for name, _ in named])
    about = {"command": "predict", "model": str(model) if isinstance(model, str | Path) else None}
    return _finish(out, runs, start, about, _cluster_info(cluster, workers))


def _one_scheme_for_every_scene(tile_kwargs: dict[str, Any], options: Any) -> dict[str, Any]:
    """Resolve a class raster's own classes once, over the whole raster, for every scene.

    Taken per scene, the distinct codes (and so the ids) could differ between the chips
    folders; one class map for all keeps them one training set.
    """
    from geounet.labels import RASTER_SUFFIXES, class_map_from_raster  # noqa: PLC0415

    labels = tile_kwargs.get("labels")
    if (
        labels is None
        or tile_kwargs.get("class_map") is not None
        or options.labels.classes_from_labels is False
        or Path(labels).suffix.lower() not in RASTER_SUFFIXES
    ):
        return tile_kwargs
    return {**tile_kwargs, "class_map": class_map_from_raster(labels, None)}


def tile_scenes(
    scenes: Sequence[SceneInput],
    out_dir: str | Path,
    *,
    options: Any = None,
    cluster: ClusterOptions | None = None,
    **tile_kwargs: Any,
) -> ScenesResult:
    """Tile many scenes on a dask cluster, each into a chips folder ``out_dir/<scene-stem>/``.

    Args:
        scenes: The scenes; each a raster path or a sequence of band files.
        out_dir: Output folder; each scene's sub-folder is a complete chips folder, as
            :func:`~geounet.tiling.tile_scene` writes it.
        options: A :class:`~geounet.tiling.TilingOptions` for every scene. When its
            ``workers`` (threads) is unset, a local cluster's CPUs are split between its
            workers.
        cluster: Local workers or a scheduler, and retries (default: a local cluster).
        **tile_kwargs: ``labels``, ``class_map``, ``class_column``, ``overwrite``: as for
            :func:`~geounet.tiling.tile_scene`; one labels file serves every scene.

    Returns:
        Per-scene status, seconds and outputs; also written to ``out_dir/run.json``.

    Raises:
        GeounetError: Bad input (a missing or unreadable scene or labels file, a chip larger
            than a scene, a non-empty output without ``overwrite``), raised before any task.
    """
    from geounet.grid import ChipGrid  # noqa: PLC0415
    from geounet.tiling import TilingOptions  # noqa: PLC0415

    unknown = set(tile_kwargs) - _TILE_KWARGS
    if unknown:
        raise ConfigError(
            f"unknown tile_scenes options {sorted(unknown)}; valid: {sorted(_TILE_KWARGS)}."
        )
    options = options or TilingOptions()
    cluster = cluster or ClusterOptions()
    named = _named_scenes(scenes)
    labels = tile_kwargs.get("labels")
    if labels is not None and not Path(labels).exists() and "://" not in str(labels):
        raise InputFileError(f"labels file {labels} does not exist; check the path.")
    out = Path(out_dir)
    overwrite = bool(tile_kwargs.get("overwrite", False))

    def check(name: str, info: Any) -> None:
        ChipGrid.from_scene(info, options.chip_size, options.effective_stride, options.edge)
        target = out / name
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise OutputError(
                f"output folder {target} is not empty; pass --overwrite to replace it or choose "
                "another --out."
            )

    _check_scenes(named, check)
    tile_kwargs = _one_scheme_for_every_scene(tile_kwargs, options)
    out = _prepare_out_dir(out)
    workers = cluster.workers or _default_workers(len(named), gpu=False)
    if cluster.scheduler is None and options.workers is None:
        from geounet._cluster import local_cpus  # noqa: PLC0415

        options = replace(options, workers=max(1, local_cpus() // workers))
    kwargs = {**tile_kwargs, "options": options}
    start = time.perf_counter()
    from geounet._cluster import open_client, tile_task  # noqa: PLC0415

    with open_client(cluster.scheduler, workers, cluster.threads_per_worker) as client:
        runs = _run(
            client,
            named,
            out,
            lambda name, files: (tile_task, files, str(out / name), kwargs),
            cluster.retries,
            "tile",
        )
    _remove_partials(out, [_STAGING.format(name=glob_escape(name)) for name, _ in named])
    about = {"command": "tile", "labels": None if labels is None else str(labels)}
    return _finish(out, runs, start, about, _cluster_info(cluster, workers))


def _cuda() -> bool:
    import torch  # noqa: PLC0415

    return bool(torch.cuda.is_available())


def _cluster_info(cluster: ClusterOptions, workers: int) -> dict[str, Any]:
    """How the run's cluster was chosen, for ``run.json``."""
    if cluster.scheduler is None:
        return {"local_workers": workers, "retries": cluster.retries}
    address = getattr(cluster.scheduler, "scheduler", None)
    address = getattr(address, "address", None) or str(cluster.scheduler)
    return {"scheduler": address, "retries": cluster.retries}


def _prepare_out_dir(out: Path) -> Path:
    """Create the folder of the scene folders (each scene's outputs are staged by its task)."""
    with write_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    return out


def _run(
    client: Any,
    named: Sequence[tuple[str, tuple[str, ...]]],
    out: Path,
    task: Callable[[str, tuple[str, ...]], tuple[Any, ...]],
    retries: int,
    verb: str,
) -> list[SceneRun]:
    """Submit one task per scene and collect the outcomes as they finish (with a progress bar)."""
    from distributed import as_completed  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    token = uuid.uuid4().hex[:8]
    futures = {}
    for name, files in named:
        fn, *args = task(name, files)
        future = client.submit(
            fn, *args, key=f"geounet-{verb}-{name}-{token}", retries=retries, pure=False
        )
        futures[future] = (name, files)
    runs: dict[str, SceneRun] = {}
    with tqdm(total=len(futures), unit="scene", desc=f"{verb} scenes") as progress:
        for future in as_completed(futures):
            name, files = futures[future]
            try:
                done = future.result()
            except Exception as exc:  # any task error: reported per scene, the others go on
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                runs[name] = SceneRun(
                    name, files, out / name, "failed",
                    error=f"{type(exc).__name__}: {exc}", traceback=tb,
                )  # fmt: skip
                log.error("%s %s failed: %s", verb, name, runs[name].error)
            else:
                runs[name] = SceneRun(
                    name, files, out / name, "ok", done["seconds"], done["outputs"]
                )
                log.info("%s %s done in %.1f s", verb, name, done["seconds"])
            future.release()
            progress.update()
    return [runs[name] for name, _ in named]


def _remove_partials(out: Path, patterns: Sequence[str]) -> None:
    """Remove working files a killed task left behind (no task of this run is running now)."""
    for pattern in patterns:
        for leftover in out.glob(pattern):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _finish(
    out: Path,
    runs: Sequence[SceneRun],
    start: float,
    about: Mapping[str, Any],
    cluster: Mapping[str, Any],
) -> ScenesResult:
    """Write ``run.json`` and build the result."""
    seconds = time.perf_counter() - start
    failed = sum(r.status == "failed" for r in runs)
    summary = {
        **about,
        "geounet_version": __version__,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "cluster": dict(cluster),
        "scenes_total": len(runs),
        "scenes_ok": len(runs) - failed,
        "scenes_failed": failed,
        "scenes": [r.to_dict() for r in runs],
    }
    path = write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return ScenesResult(out, tuple(runs), path, seconds)
