"""Jobs: tile -> train -> predict -> vectorize -> evaluate -> report as one reproducible run.

Layout of a job folder (``JobConfig.out``)::

    job.yaml       the resolved job: absolute paths, every default filled in
    tile/          chips, label chips, index.gpkg, stats.json (geounet.tiling)
    train/         model.safetensors, metrics.json, logs/, plots/ (geounet.training);
                   folds/ with ``train.folds``: the cross-validation (geounet.folds)
    predict/       classes.tif (COG), classes.qml, probabilities.tif, preview.png
    vectorize/     polygons.gpkg
    evaluate/      metrics.json, reference_<split>.tif (the labels that were scored),
                   baseline_classes.tif with ``evaluate.baseline: random_forest``
    report/        report.html, report.md and their PNG figures
    item.json      a STAC Item of the outputs

A job of several scenes (``tile.scenes``) tiles them into one chips set and trains one model;
predict, vectorize, evaluate and report then write one subfolder per scene
(``predict/<scene>/classes.tif``, ``evaluate/<scene>/metrics.json``, ``report/<scene>/``,
``item_<scene>.json``), their outputs keyed ``<scene>/<name>``; ``evaluate/metrics.json``
pools the scored scenes (their confusion matrices summed) and ``report/index.html`` lists them.

Every stage folder gets a ``stage.json`` once its outputs are complete. It holds the stage's
fingerprint: a hash of its config section, of the size and modification time of its input
files and of the run ids of the stages it reads from. A re-run skips a stage whose
``stage.json`` has the same fingerprint and whose outputs all exist; a stage that runs gets a
new run id, so every stage after it runs too. ``stage.json`` is removed before a stage runs,
so a stage that fails is never taken for finished, and the stage functions themselves write
under temporary names, so the outputs of the stages before it stay as they were.

Before the first stage, :func:`geounet._job_checks.check_job` checks the whole job from file
headers (inputs, bands, pixel sizes, option consistency, the job folder) and lists every
problem at once. A run holds the job folder's lock (:mod:`geounet._lock`) throughout, so a
second run into the same folder fails at once, naming the first. The train stage resumes from
``train/checkpoints/last.ckpt`` when a run with the same fingerprint (recorded in
``train/attempt.json`` when it started) was interrupted; changed settings or ``force`` start
afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from geounet import __version__
from geounet._files import write_text_atomic
from geounet._job_checks import check_job
from geounet._lock import folder_lock, is_launch_rank_zero
from geounet.chips import METADATA_FILES
from geounet.config import STAGES, JobConfig
from geounet.errors import (
    FolderLockedError,
    GeounetError,
    JobCheckError,
    OutputError,
    StageError,
)

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
ATTEMPT_FILE = "attempt.json"
"""Written into a resumable stage's folder when it starts: the fingerprint of that attempt."""

_NOT_FINGERPRINTED = {"progress_bar", "workers", "readers", "num_workers", "out", "chips"}
"""Config fields that change how fast a stage runs, not what it writes, and the job-owned
folders (a moved job folder is still up to date)."""


@dataclass(frozen=True)
class StageRun:
    """What one stage did in a run.

    Attributes:
        name: The stage (one of :data:`geounet.config.STAGES`).
        status: ``ran`` or ``skipped`` (outputs complete, inputs and config unchanged).
        seconds: Wall time of the stage in this run (0 when skipped).
        outputs: Output name -> path.
    """

    name: str
    status: Literal["ran", "skipped"]
    seconds: float
    outputs: dict[str, Path]


@dataclass(frozen=True)
class JobResult:
    """The stages of a job run and the test metrics.

    Attributes:
        out_dir: The job folder.
        stages: One :class:`StageRun` per stage, in order.
        metrics: The evaluation metrics (``evaluate/metrics.json``).
    """

    out_dir: Path
    stages: tuple[StageRun, ...]
    metrics: dict[str, Any]

    def output(self, stage: str, name: str) -> Path:
        """The path of one output, e.g. ``output("predict", "classes")``."""
        return next(s for s in self.stages if s.name == stage).outputs[name]


def run_job(
    job: JobConfig, *, force: bool = False, on_stage: Callable[[StageRun], None] | None = None
) -> JobResult:
    """Run (or resume) a job, skipping the stages that are already done.

    Args:
        job: The job (see :func:`geounet.config.load_job_config`).
        force: Run every stage, even those whose outputs are up to date.
        on_stage: Called after each stage (e.g. to print progress).

    Returns:
        The stages' outcomes and output paths, and the evaluation metrics.

    Raises:
        JobCheckError: The job's inputs or options cannot work (every problem listed), found
            from file headers before any stage runs.
        FolderLockedError: Another live run holds the job folder (its pid, host, start time
            and command are named).
        StageError: A stage failed; the message names it, and the outputs of the stages
            before it are kept (a re-run starts from the failed stage).
    """
    out, source = Path(job.out), f"job {job.name!r}"
    fresh = not out.exists()
    try:
        # The lock comes first, so a second run into a busy folder is refused at once. The
        # other ranks of a DDP run re-run the job file inside the same run: rank 0 holds it.
        with folder_lock(out) if is_launch_rank_zero() else nullcontext():
            check_job(job, source)
            return _run_stages(job, out, force, on_stage)
    except FolderLockedError:
        raise
    except JobCheckError:
        if fresh and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a job refused before its first stage leaves no folder behind
        raise
    except OutputError:
        check_job(job, source)  # the folder cannot be locked: list it with every other problem
        raise


def _run_stages(
    job: JobConfig, out: Path, force: bool, on_stage: Callable[[StageRun], None] | None
) -> JobResult:
    write_text_atomic(out / "job.yaml", yaml.safe_dump(job.to_yaml_dict(), sort_keys=False))
    runs: dict[str, StageRun] = {}
    run_ids: dict[str, str] = {}
    for name in STAGES:
        stage = _STAGE_TABLE[name]
        folder = out / name
        fingerprint = _fingerprint(name, job, stage.upstream, run_ids)
        record = _read_record(folder)
        if not force and record is not None and _is_current(record, fingerprint, out):
            log.info("stage %s: up to date (finished %s), skipped", name, record["finished"])
            run = StageRun(name, "skipped", 0.0, _paths(out, record["outputs"]))
            run_ids[name] = record["run_id"]
        else:
            log.info("stage %s: running", name)
            (folder / STAGE_FILE).unlink(missing_ok=True)
            kwargs = (
                {"resume": _start_attempt(folder, fingerprint, force)} if stage.resumable else {}
            )
            start = time.perf_counter()
            try:
                outputs = stage.run(job, out, runs, **kwargs)
            except GeounetError as exc:
                raise StageError(name, f"stage {name!r} failed: {exc}\n{_kept(runs)}") from exc
            except Exception as exc:
                raise StageError(
                    name, f"stage {name!r} failed ({type(exc).__name__}: {exc})\n{_kept(runs)}"
                ) from exc
            seconds = time.perf_counter() - start
            run = StageRun(name, "ran", seconds, outputs)
            run_ids[name] = _write_record(folder, fingerprint, out, outputs, seconds)
        runs[name] = run
        if on_stage is not None:
            on_stage(run)
    metrics = json.loads(runs["evaluate"].outputs["metrics"].read_text())
    return JobResult(out, tuple(runs.values()), metrics)


def _kept(runs: Mapping[str, StageRun]) -> str:
    done = ", ".join(runs) or "none"
    return f"Finished stages kept: {done}. Fix the cause and run the job again to resume."


# --- fingerprints and stage records ---------------------------------------------------------


def _file_stats(paths: list[Path | None]) -> list[list[Any]]:
    """Path, size and mtime of input files (the make rule: changed files rerun a stage)."""
    stats = []
    for path in paths:
        if path is None:
            continue
        try:
            st = Path(path).stat()
            stats.append([str(path), st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append([str(path), None, None])  # the stage itself reports a missing file
    return stats


def _fingerprint(
    name: str, job: JobConfig, upstream: tuple[str, ...], run_ids: Mapping[str, str]
) -> str:
    section = getattr(job, name).model_dump(mode="json", exclude=_NOT_FINGERPRINTED)
    content = {
        "stage": name,
        "geounet": __version__,
        "config": section,
        "files": _file_stats(_INPUT_FILES[name](job)),
        "upstream": {u: run_ids[u] for u in upstream},
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _read_record(folder: Path) -> dict[str, Any] | None:
    return _read_json(folder / STAGE_FILE)


def _is_current(record: Mapping[str, Any], fingerprint: str, out: Path) -> bool:
    if record.get("fingerprint") != fingerprint:
        return False
    return all((out / rel).exists() for rel in record.get("outputs", {}).values())


def _start_attempt(folder: Path, fingerprint: str, force: bool) -> bool:
    """Record this attempt's fingerprint; whether an interrupted attempt of it can resume.

    An attempt resumes when the last one had the same fingerprint (same settings, same
    upstream runs) and left a Lightning ``checkpoints/last.ckpt`` (written after every epoch).
    """
    previous = _read_json(folder / ATTEMPT_FILE)
    last = folder / "checkpoints" / "last.ckpt"
    same = previous is not None and previous.get("fingerprint") == fingerprint
    resume = not force and same and _is_complete_checkpoint(last)
    if not force and same and last.is_file() and not resume:
        log.warning("stage %s: %s is incomplete (killed while saving?); starting afresh",
                    folder.name, last)  # fmt: skip
    elif resume:
        log.info("stage %s: settings unchanged since the interrupted run; resuming from %s",
                 folder.name, last)  # fmt: skip
    elif last.is_file():
        why = "--force" if force else "its settings or inputs changed"
        log.info("stage %s: starting afresh (%s), not from %s", folder.name, why, last)
    folder.mkdir(parents=True, exist_ok=True)
    attempt = {"fingerprint": fingerprint, "started": datetime.now(UTC).isoformat()}
    write_text_atomic(folder / ATTEMPT_FILE, json.dumps(attempt, indent=2) + "\n")
    return resume


def _is_complete_checkpoint(path: Path) -> bool:
    """A Lightning checkpoint (a zip archive) whose central directory, written last, is there."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _paths(out: Path, outputs: Mapping[str, str]) -> dict[str, Path]:
    return {key: out / rel for key, rel in outputs.items()}


def _write_record(
    folder: Path, fingerprint: str, out: Path, outputs: Mapping[str, Path], seconds: float
) -> str:
    run_id = uuid.uuid4().hex
    record = {
        "fingerprint": fingerprint,
        "run_id": run_id,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "geounet": __version__,
        "outputs": {key: os.path.relpath(path, out) for key, path in outputs.items()},
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / STAGE_FILE, json.dumps(record, indent=2) + "\n")
    return run_id


# --- the stages -------------------------------------------------------------------------------


def _predict_scenes(job: JobConfig) -> list[tuple[str | None, list[Path]]]:
    """The scenes predict runs on: ``(name, files)``; name ``None`` writes to the stage folder.

    ``predict.scene`` is one scene; otherwise every tiled scene is predicted, a job of
    ``tile.scenes`` into one subfolder per scene.
    """
    if job.predict.scene is not None:
        return [(None, list(job.predict.scene))]
    if job.tile.scenes is None:
        return [(None, list(job.tile.scene or []))]
    return [(s.name, list(s.scene)) for s in job.tile.scenes]


def _predict_scene_files(job: JobConfig) -> list[Path]:
    return [p for _, files in _predict_scenes(job) for p in files]


def _key(name: str | None, key: str) -> str:
    """An output key: ``classes`` for a one-scene job, ``<scene>/classes`` per scene."""
    return key if name is None else f"{name}/{key}"


def _sub(folder: Path, name: str | None) -> Path:
    return folder if name is None else folder / name


def _tile(job: JobConfig, out: Path, runs: Mapping[str, StageRun]) -> dict[str, Path]:
    from geounet.tiling import tile_scene_set

    result = tile_scene_set(**job.tile.scene_set_kwargs(), overwrite=True)
    folder = Path(result.out_dir)
    return {"chips": folder, **{n.split(".")[0]: folder / n for n in METADATA_FILES}}


def _train(
    job: JobConfig, out: Path, runs: Mapping[str, StageRun], *, resume: bool = False
) -> dict[str, Path]:
    from geounet.training import fit

    result = fit(**job.train.fit_kwargs(), resume=resume, overwrite=not resume)
    if result.model_path is None:
        raise StageError("train", "training wrote no model file (not rank 0 of a DDP run?).")
    outputs = {"model": result.model_path, "metrics": result.out_dir / "metrics.json"}
    if job.train.folds is not None:
        from geounet.baseline import ForestOptions
        from geounet.folds import cross_validate

        forest = ForestOptions() if job.evaluate.baseline == "random_forest" else None
        cv = cross_validate(
            job.train.chips, result.out_dir / "folds", folds=job.train.folds,
            options=job.train.fit_kwargs()["options"], baseline=forest,
            keep_models=job.train.fold_models, overwrite=True,
        )  # fmt: skip
        outputs["cv_metrics"] = cv.metrics_path
    return outputs | {f"plot_{k}": v for k, v in result.plots.items()}


def _predict(job: JobConfig, out: Path, runs: Mapping[str, StageRun]) -> dict[str, Path]:
    from geounet.inference import predict_scene

    outputs: dict[str, Path] = {}
    for name, files in _predict_scenes(job):
        scene = [str(p) for p in files]
        result = predict_scene(
            str(runs["train"].outputs["model"]), scene,
            _sub(out / "predict", name), options=job.predict.predict_options(),
        )  # fmt: skip
        outputs[_key(name, "classes")] = result.classes
        outputs[_key(name, "qml")] = result.qml
        outputs[_key(name, "preview")] = result.preview
        if result.probabilities is not None:
            outputs[_key(name, "probabilities")] = result.probabilities
    return outputs


def _vectorize(job: JobConfig, out: Path, runs: Mapping[str, StageRun]) -> dict[str, Path]:
    from geounet.vectorize import vectorize_raster

    predicted = runs["predict"].outputs
    outputs: dict[str, Path] = {}
    for name, _ in _predict_scenes(job):
        folder = _sub(out / "vectorize", name)
        folder.mkdir(parents=True, exist_ok=True)
        outputs[_key(name, "polygons")] = vectorize_raster(
            predicted[_key(name, "classes")], folder / "polygons.gpkg",
            probabilities_path=predicted.get(_key(name, "probabilities")),
            **job.vectorize.model_dump(),
        )  # fmt: skip
    return outputs


def _evaluate(job: JobConfig, out: Path, runs: Mapping[str, StageRun]) -> dict[str, Path]:
    from geounet._nodata import nodata_rule_from_json
    from geounet.classes import ClassMap
    from geounet.evaluate import evaluate_prediction, write_metrics
    from geounet.labels import RASTER_SUFFIXES

    cfg = job.evaluate
    folder = out / "evaluate"
    folder.mkdir(exist_ok=True)
    options: dict[str, Any] = {
        "object_classes": cfg.object_classes,
        "iou_threshold": cfg.iou_threshold,
        "min_area_m2": cfg.min_area_m2,
        "unknown_classes": cfg.unknown_classes,
    }
    if cfg.reference is not None:
        if job.tile.class_map is not None and cfg.reference.suffix.lower() not in RASTER_SUFFIXES:
            options["class_map"] = ClassMap.from_yaml(job.tile.class_map)
            options["class_column"] = job.tile.class_column
    outputs: dict[str, Path] = {}
    per_scene: dict[str, dict[str, Any]] = {}
    forest = _baseline_forest(job, runs)
    files = dict(_predict_scenes(job))
    cv = _cross_validation(runs)
    for name, reference in _references(job, runs, folder):
        _sub(folder, name).mkdir(exist_ok=True)
        classes = runs["predict"].outputs[_key(name, "classes")]
        metrics = evaluate_prediction(classes, reference, **options)
        metrics["scored"] = f"{cfg.split} split" if cfg.reference is None else str(reference)
        if forest is not None:
            from geounet.baseline import evaluate_forest

            # Trained once on the train chips, scored by the same function on the same pixels.
            baseline_path = _sub(folder, name) / "baseline_classes.tif"
            metrics["baseline"] = evaluate_forest(
                runs["tile"].outputs["chips"], files[name], reference, baseline_path,
                forest=forest, nodata=nodata_rule_from_json(job.predict.nodata), **options,
            )  # fmt: skip
            metrics["baseline"]["scored"] = metrics["scored"]
            outputs[_key(name, "baseline_classes")] = baseline_path
        if cv is not None:
            metrics["cross_validation"] = cv
        path = write_metrics(metrics, _sub(folder, name) / "metrics.json")
        outputs |= {_key(name, "metrics"): path, _key(name, "reference"): Path(reference)}
        per_scene[name or ""] = metrics
    if job.tile.scenes is not None and job.predict.scene is None:
        pooled = _pooled_metrics(per_scene)
        if forest is not None:
            pooled["baseline"] = _pooled_metrics({n: m["baseline"] for n, m in per_scene.items()})
        if cv is not None:
            pooled["cross_validation"] = cv
        outputs["metrics"] = write_metrics(pooled, folder / "metrics.json")
    return outputs


def _baseline_forest(job: JobConfig, runs: Mapping[str, StageRun]) -> Any:
    """The per-pixel forest trained on the train chips, when ``evaluate.baseline`` asks for it."""
    if job.evaluate.baseline != "random_forest":
        return None
    from geounet.baseline import train_forest

    return train_forest(runs["tile"].outputs["chips"], split="train")


def _cross_validation(runs: Mapping[str, StageRun]) -> dict[str, Any] | None:
    """The fold summary of the train stage (``train.folds``), or ``None``."""
    cv_metrics = runs["train"].outputs.get("cv_metrics")
    if cv_metrics is None:
        return None
    cv = json.loads(Path(cv_metrics).read_text())
    return {k: cv[k] for k in ("folds", "scored", "std", "summary")}


def _references(
    job: JobConfig, runs: Mapping[str, StageRun], folder: Path
) -> list[tuple[str | None, Path]]:
    """``(scene name, reference)`` of each scene evaluate scores.

    Without ``evaluate.reference``, each scene's label chips of ``evaluate.split``; a scene
    with none of them (a training scene of a whole-scene split) is not scored.
    """
    from geounet.tiling import scene_entries, write_split_labels

    cfg, scenes = job.evaluate, _predict_scenes(job)
    if cfg.reference is not None:
        return [(name, cfg.reference) for name, _ in scenes]
    chips = runs["tile"].outputs["chips"]
    if scenes[0][0] is None:
        return [(None, write_split_labels(chips, cfg.split, folder / f"reference_{cfg.split}.tif"))]
    counts = {e["name"]: e["splits"].get(cfg.split, 0) for e in scene_entries(chips)}
    chosen = [name for name, _ in scenes if name is not None and counts.get(name, 0) > 0]
    skipped = [name for name, _ in scenes if name not in chosen]
    if skipped:
        log.info("evaluate: scenes %s have no %s chips; not scored", skipped, cfg.split)
    if not chosen:
        raise StageError("evaluate", f"no scene has chips of the {cfg.split!r} split to score.")
    for name in chosen:
        (folder / name).mkdir(exist_ok=True)
    return [
        (name, write_split_labels(chips, cfg.split, folder / name / f"reference_{cfg.split}.tif",
                                  scene=name))
        for name in chosen
    ]  # fmt: skip


def _pooled_metrics(per_scene: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Pixel metrics of every scored scene together (their confusion matrices summed)."""
    import numpy as np

    from geounet.evaluate import metrics_from_confusion

    names: list[str] = []
    for m in per_scene.values():
        names += [n for n in m["confusion_matrix"]["classes"] if n not in names]
    total = np.zeros((len(names), len(names)), dtype=np.int64)
    for m in per_scene.values():
        own = [names.index(n) for n in m["confusion_matrix"]["classes"]]
        total[np.ix_(own, own)] += np.asarray(m["confusion_matrix"]["matrix"], dtype=np.int64)
    pooled = metrics_from_confusion(total, names)
    absent = [n for n in names if pooled["per_class"][n]["support"] == 0]
    summary = {
        name: {
            "metrics": f"{name}/metrics.json",
            "mean": m["mean"],
            "overall_accuracy": m["overall_accuracy"],
            "pixels_evaluated": m["pixels_evaluated"],
            "objects": m.get("objects"),
        }
        for name, m in per_scene.items()
    }
    first = next(iter(per_scene.values()))
    return {
        "scored": f"{first['scored']} of the scenes {list(per_scene)}, pooled",
        **pooled,
        "absent_classes": absent,
        "scenes": summary,
    }


def _report(job: JobConfig, out: Path, runs: Mapping[str, StageRun]) -> dict[str, Path]:
    from geounet.report import ReportOptions, write_report
    from geounet.stac import ItemAssets, write_stac_item

    predicted, evaluated = runs["predict"].outputs, runs["evaluate"].outputs
    outputs: dict[str, Path] = {}
    for name, files in _predict_scenes(job):
        # A training scene of a whole-scene split was not scored: its report shows the maps.
        scored = _key(name, "metrics") in evaluated
        title = job.report.title or job.name
        outputs[_key(name, "report")] = write_report(
            _sub(out / "report", name),
            scene=[str(p) for p in files],
            classes=predicted[_key(name, "classes")],
            reference=evaluated[_key(name, "reference")] if scored else None,
            metrics=evaluated[_key(name, "metrics")] if scored else None,
            train_dir=Path(job.train.out),
            options=ReportOptions(title if name is None else f"{title}: {name}",
                                  job.tile.display_bands),
        )  # fmt: skip
        if job.report.stac:
            assets = ItemAssets(
                classes=predicted[_key(name, "classes")],
                probabilities=predicted.get(_key(name, "probabilities")),
                polygons=runs["vectorize"].outputs[_key(name, "polygons")],
                metrics=evaluated.get(_key(name, "metrics")),
                model=runs["train"].outputs["model"],
                preview=predicted[_key(name, "preview")],
                scene=tuple(str(p) for p in files),
            )
            item = out / ("item.json" if name is None else f"item_{name}.json")
            item_id = job.name if name is None else f"{job.name}-{name}"
            outputs[_key(name, "stac_item")] = write_stac_item(
                item, item_id=item_id, assets=assets, datetime=job.report.datetime
            )
    names = [name for name, _ in _predict_scenes(job) if name is not None]
    if names:
        from geounet._scene_index import write_scene_index

        pooled = json.loads(evaluated["metrics"].read_text()) if "metrics" in evaluated else None
        title = job.report.title or job.name
        outputs["report"] = write_scene_index(out / "report", title, pooled, names)
    return outputs


@dataclass(frozen=True)
class _Stage:
    run: Callable[..., dict[str, Path]]
    upstream: tuple[str, ...]
    resumable: bool = False  # run() takes resume=True to continue an interrupted attempt


_STAGE_TABLE: dict[str, _Stage] = {
    "tile": _Stage(_tile, ()),
    "train": _Stage(_train, ("tile",), resumable=True),
    "predict": _Stage(_predict, ("train",)),
    "vectorize": _Stage(_vectorize, ("predict",)),
    "evaluate": _Stage(_evaluate, ("tile", "train", "predict")),
    "report": _Stage(_report, ("train", "predict", "vectorize", "evaluate")),
}

_INPUT_FILES: dict[str, Callable[[JobConfig], list[Path | None]]] = {
    "tile": lambda job: [*job.tile.scene_files(), job.tile.class_map],
    "train": lambda job: [],
    "predict": lambda job: _predict_scene_files(job),
    "vectorize": lambda job: [],
    "evaluate": lambda job: [job.evaluate.reference, job.tile.class_map],
    "report": lambda job: [],
}
