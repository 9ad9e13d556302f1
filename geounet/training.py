"""Training: a Lightning task over a chips folder, ending in a self-describing model file.

:func:`fit` trains a registered model on the ``train`` split of a chips folder, validates on the
``val`` split after every epoch and writes into ``out_dir``::

    model.safetensors        the shippable model file (weights + metadata, see geounet.modelfile)
    metrics.json             validation metrics of the best checkpoint, per class and mean
    checkpoints/last.ckpt    Lightning checkpoints (trusted local files, for --resume only)
    checkpoints/best-*.ckpt  the best epoch by validation mIoU
    logs/metrics.csv         per-step and per-epoch losses and metrics (CSVLogger)
    plots/curves.png, plots/confusion_matrix.png, plots/val_samples.png

Metrics ignore label 255 and are computed with torchmetrics on the validation split; the mean
IoU/F1 average the classes that occur in the labels or the predictions (torchmetrics' "macro").
A run is reproducible: the same seed and options on a CPU give the same metrics (Lightning's
``seed_everything(seed, workers=True)`` plus deterministic algorithms).

On a busy or shared CPU, set ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported (``geounet
train`` does): spinning OpenMP threads made training steps up to 10x slower on a 2-core machine
running other jobs.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from geounet import modelfile
from geounet._files import staged_output, write_text_atomic
from geounet._lock import is_launch_rank_zero
from geounet._task import MONITOR, ChipDataModule, OptimizerOptions, SegmentationTask
from geounet._validation import (
    ChipEvaluation,
    confusion_matrix,
    evaluate_chips,
    pixel_metrics,
)
from geounet.chips import ChipsFolder
from geounet.classes import no_negatives_message
from geounet.data import Augment, ChipsInfo, read_chips_info
from geounet.errors import ConfigError, InputFileError, OutputError
from geounet.losses import LossSpec
from geounet.models import describe_model
from geounet.radiometry import SENTINEL2_INDEX_BANDS, InputRecipe, SpectralJitter, resolve_offset

__all__ = [
    "MODEL_FILE",
    "MONITOR",
    "ChipDataModule",
    "ChipEvaluation",
    "OptimizerOptions",
    "SegmentationTask",
    "TrainResult",
    "TrainingOptions",
    "confusion_matrix",
    "evaluate_chips",
    "fit",
    "pixel_metrics",
]

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
"""Name of the model file :func:`fit` writes into its output folder."""
PRODUCT_NAMES = (MODEL_FILE, "metrics.json", "plots")
"""What a finished training publishes as one set (beside Lightning's checkpoints and logs)."""


@dataclass(frozen=True)
class TrainingOptions:
    """Everything :func:`fit` needs besides the chips and output folders.

    Attributes:
        model: Registered model name (:func:`geounet.models.list_models`).
        model_options: Its options (:func:`geounet.models.model_options`).
        loss: Loss spec of :func:`geounet.losses.create_loss` (``"ce+dice"``, ``{"ce": 1}``).
        loss_options: Loss options (``class_weights``: one per class, or ``auto`` for the damped
            inverse frequency of the train chips; ``gamma``, ...).
        optimizer: Optimiser and schedule.
        augment: Training augmentation (``None``: none).
        spectral: Random per-band gain/offset of the harmonised pixels (see
            :class:`geounet.radiometry.SpectralJitter`).
        scale: Radiometric scale after the offset (``1e-4``: Sentinel-2/Landsat C1 DN to
            reflectance; 1 keeps DN). Stored in the model file.
        dn_offset: DN added to the training scene to harmonise it: a number, or ``auto`` (its
            Sentinel-2 product metadata: -1000 from baseline 04.00, else 0).
        indices: Index channels (``ndvi``, ``ndwi``, ``ndbi``) appended to the bands.
        index_bands: Band name of each index role (``red``, ``green``, ``nir``, ``swir1``).
        normalize: ``training`` (the training statistics, stored in the model file) or
            ``scene`` (predict normalises each scene with its own band statistics, which makes
            the model blind to a per-band gain and offset; the ONNX engine cannot).
        epochs: Maximum number of epochs.
        batch_size: Chips per batch and device.
        num_workers: DataLoader worker processes (0 reads in the main process).
        cache_mb: Keep the train and val chips in memory after their first read, up to this
            many MiB per split (0 reads every time; each DataLoader worker holds its own).
            Results are identical; a demo-sized epoch on 2 CPU cores is about a third faster.
        ema: Decay of an exponential moving average of the weights (e.g. ``0.99``), updated
            after every step; validation, the best checkpoint and the model file then use the
            averaged weights. ``None`` trains and ships the raw weights.
        precision: Lightning precision (``32-true``; ``bf16-mixed`` on recent GPUs).
        accelerator: ``auto``, ``cpu``, ``gpu``, ``mps``.
        devices: Devices per node: a count, a list of ids or ``auto``.
        num_nodes: Machines taking part; with ``strategy="ddp"`` every node runs ``devices``
            processes (``torchrun``, SLURM ``srun`` or Lightning's own launcher start them).
        strategy: Lightning strategy (``auto``, ``ddp``, ...).
        seed: Seed of initial weights, shuffling and augmentation.
        deterministic: Use deterministic algorithms (on a GPU, non-deterministic ops warn).
        patience: Early-stopping patience in epochs on validation mIoU; ``None`` disables it.
        channels_last: Use the channels-last memory layout (faster convolutions on most CPUs
            and on tensor-core GPUs).
        threads: ``torch.set_num_threads`` value; ``None`` keeps torch's default.
        tensorboard: Also log to TensorBoard (needs the ``tensorboard`` package).
        progress_bar: Show a progress bar.
        val_samples: Number of validation chips drawn in ``plots/val_samples.png``.
    """

    model: str = "unet"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    loss: LossSpec = "ce+dice"
    loss_options: Mapping[str, Any] = field(default_factory=dict)
    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    augment: Augment | None = field(default_factory=Augment)
    spectral: SpectralJitter = field(default_factory=SpectralJitter)
    scale: float = 1.0
    dn_offset: float | str = "auto"
    indices: tuple[str, ...] = ()
    index_bands: Mapping[str, str] = field(default_factory=lambda: dict(SENTINEL2_INDEX_BANDS))
    normalize: str = "training"
    epochs: int = 50
    batch_size: int = 8
    num_workers: int = 0
    cache_mb: float = 1024.0
    ema: float | None = None
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int | str | Sequence[int] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    seed: int = 0
    deterministic: bool = True
    patience: int | None = 15
    channels_last: bool = True
    threads: int | None = None
    tensorboard: bool = False
    progress_bar: bool = True
    val_samples: int = 6

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "num_nodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.num_workers < 0 or self.val_samples < 0:
            raise ConfigError("num_workers and val_samples must be >= 0.")
        if self.cache_mb < 0:
            raise ConfigError(f"cache_mb must be >= 0, got {self.cache_mb}.")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema must be in (0, 1) or None, got {self.ema}.")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 or None, got {self.patience}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in checkpoints and the model file)."""
        out = asdict(self)
        out["model_options"] = dict(self.model_options)
        out["loss_options"] = dict(self.loss_options)
        out["index_bands"] = dict(self.index_bands)
        out["indices"] = list(self.indices)
        out["devices"] = (
            list(self.devices)
            if isinstance(self.devices, Sequence) and not isinstance(self.devices, str)
            else self.devices
        )
        return out


@dataclass(frozen=True)
class TrainResult:
    """What :func:`fit` produced.

    Attributes:
        out_dir: The output folder.
        model_path: The model file (``None`` on non-zero DDP ranks, which write nothing).
        best_checkpoint: The checkpoint the model file was made from.
        epochs: Epochs completed in total (a resumed run counts the earlier ones).
        best_epoch: 0-based epoch of the best checkpoint.
        metrics: Validation metrics of the best checkpoint (``miou``, ``iou_<class>``, ...).
        seconds: Wall time of ``Trainer.fit`` in this call.
        plots: Plot name -> PNG path.
    """

    out_dir: Path
    model_path: Path | None
    best_checkpoint: Path | None
    epochs: int
    best_epoch: int | None
    metrics: dict[str, float]
    seconds: float
    plots: dict[str, Path]


def _prepare_out_dir(out: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Check the output folder; return the checkpoint to resume from (or None).

    In a multi-process run only rank 0 checks and clears the folder: the other ranks start
    while (or after) it writes there, and they write nothing themselves.
    """
    last = out / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise InputFileError(
                f"cannot resume: {last} does not exist; run without --resume to start afresh."
            )
        return last
    if not is_launch_rank_zero():
        return None
    ours = [out / n for n in (MODEL_FILE, "metrics.json", "checkpoints", "logs", "plots")]
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{out} already holds a training run ({', '.join(p.name for p in existing)}); pass "
            "--resume to continue it, --overwrite to replace it, or choose another --out."
        )
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror}; choose another --out.") from exc
    return None


def _stash_log(out: Path) -> Path | None:
    """Move the CSV log of the run being resumed aside (Lightning's CSVLogger deletes it).

    The stash survives a crash of the resumed run: the next resume folds it in again.
    """
    current, stash = out / "logs" / "metrics.csv", out / "logs" / "metrics.resumed.csv"
    if current.is_file():
        if stash.is_file():
            _merge_log(out, stash, keep=True)
        current.replace(stash)
    return stash if stash.is_file() else None


def _merge_log(out: Path, stash: Path, *, keep: bool = False) -> None:
    """Prepend the stashed rows of epochs before the resumed run's first epoch to the log."""
    import pandas as pd

    current = out / "logs" / "metrics.csv"
    old = pd.read_csv(stash)
    new = pd.read_csv(current) if current.is_file() else old.iloc[:0]
    if len(new) and "epoch" in new and new["epoch"].notna().any():
        # Rows from a partly trained epoch after the last checkpoint are trained again.
        old = old[old["epoch"] < new["epoch"].min()]
    merged = pd.concat([old, new], ignore_index=True)
    merged.to_csv(stash if keep else current, index=False)
    if not keep:
        stash.unlink()


class _ResumeLog(pl.Callback):
    """Says where a resumed run picks up (the epoch is known once the checkpoint is restored)."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log.info(
            "resuming training from epoch %d of %d (%d done; %s)",
            trainer.current_epoch, trainer.max_epochs, trainer.current_epoch, self.checkpoint,
        )  # fmt: skip


def _callbacks_and_loggers(out: Path, options: TrainingOptions) -> tuple[list[Any], list[Any]]:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger

    best = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best-{epoch}", monitor=MONITOR, mode="max"
    )
    # Lightning 2.6's save_last writes last.ckpt only in epochs that improve the monitored
    # metric, so a resume would restart from the best epoch; a second, unmonitored callback
    # writes the latest epoch every time.
    last = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False
    )
    callbacks: list[Any] = [best, last]
    if options.patience is not None:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="max", patience=options.patience))
    if options.progress_bar:
        callbacks.append(TQDMProgressBar())
    loggers: list[Any] = [CSVLogger(out, name="logs", version="")]
    if options.tensorboard:
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(out, name="tensorboard", version=""))
        except ModuleNotFoundError as exc:
            raise ConfigError(
                "tensorboard: true needs the tensorboard package (pip install tensorboard)."
            ) from exc
    return callbacks, loggers


def fit(
    chips_dir: str | Path,
    out_dir: str | Path,
    *,
    options: TrainingOptions | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train a model on a chips folder and write the model file, metrics, logs and plots.

    Args:
        chips_dir: A chips folder with labels (``geounet tile --labels ...``).
        out_dir: Output folder (layout in the module docstring).
        options: Model, loss, optimiser, epochs, hardware, seed; defaults when None.
        resume: Continue from ``out_dir/checkpoints/last.ckpt``: the epoch count, optimiser,
            schedule, early stopping and best score continue where they stopped, and the CSV log
            keeps the earlier epochs. ``options.epochs`` is the total, so raise it to train
            longer. Checkpoints are read with ``torch.load(weights_only=True)``; still, resume
            only your own runs: checkpoints are local working files, the model file is what
            you ship.
        overwrite: Replace an earlier run in ``out_dir`` (without ``resume``).

    Returns:
        Paths, epochs and the best checkpoint's validation metrics.

    Raises:
        GeounetError: A bad chips folder, option or output folder, before training starts.
    """
    options = options or TrainingOptions()
    info = read_chips_info(chips_dir)
    out = Path(out_dir)
    ckpt_path = _prepare_out_dir(out, resume=resume, overwrite=overwrite)
    with _torch_settings(options.threads):
        return _fit(info, out, options, ckpt_path)


@contextmanager
def _torch_settings(threads: int | None) -> Iterator[None]:
    """Apply ``threads`` for the run and restore torch's global flags afterwards.

    Lightning's ``deterministic`` switches torch's global deterministic mode on; a notebook or a
    test session that calls :func:`fit` should not inherit it.
    """
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


def _fit(
    info: ChipsInfo, out: Path, options: TrainingOptions, ckpt_path: Path | None
) -> TrainResult:
    """Build the task, data and trainer, fit, then finish on rank 0."""
    pl.seed_everything(options.seed, workers=True, verbose=False)
    recipe = _input_recipe(info, options)
    architecture = {
        "name": options.model,
        "in_channels": recipe.in_channels,
        "num_classes": info.classes.num_classes,
        "options": dict(options.model_options),
    }
    loss_options = _resolve_class_weights(info, options.loss_options)
    task = SegmentationTask(
        architecture,
        info.classes.names,
        loss=options.loss,
        loss_options=loss_options,
        optimizer=asdict(options.optimizer),
        ignore_index=info.classes.ignore_index,
        channels_last=options.channels_last,
        ema=options.ema,
    )
    run_config = {"chips_dir": str(info.path.resolve()), "options": options.to_dict()}
    run_config["loss_options"] = loss_options  # with class_weights: auto resolved
    task.run_config = run_config
    data = ChipDataModule(
        info.path,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        augment=options.augment,
        recipe=recipe,
        jitter=options.spectral,
        cache_mb=options.cache_mb,
    )
    callbacks, loggers = _callbacks_and_loggers(out, options)
    if ckpt_path is not None:
        callbacks.append(_ResumeLog(ckpt_path))
    steps_per_epoch = math.ceil(len(data.train_set) / options.batch_size)
    trainer = pl.Trainer(
        max_epochs=options.epochs,
        accelerator=options.accelerator,
        devices=options.devices,  # type: ignore[arg-type]
        num_nodes=options.num_nodes,
        strategy=options.strategy,
        precision=options.precision,  # type: ignore[arg-type]
        deterministic="warn" if options.deterministic else False,
        callbacks=callbacks,
        logger=loggers,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        enable_progress_bar=options.progress_bar,
        enable_model_summary=False,
        default_root_dir=out,
    )
    log.info(
        "training %s on %d train / %d val chips of %s for up to %d epochs",
        options.model, len(data.train_set), len(data.val_set), info.path, options.epochs,
    )  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        # num_workers is the user's choice (0 is fastest for small chips on few cores), and a
        # resumed run appends to its own logs on purpose.
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        # Lightning's own use of a deprecated torch API; nothing a user can act on.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        warnings.filterwarnings("ignore", message=r".*Experiment logs directory .* exists.*")
        warnings.filterwarnings(
            "ignore", message=r".*Checkpoint directory .* exists and is not empty.*"
        )
        # The validation metrics are torchmetrics values whose compute() already reduced the
        # states of every process (SegmentationTask.on_validation_epoch_end).
        warnings.filterwarnings("ignore", message=r".*self.log\('val_(?!loss).*sync_dist=True.*")
        resumed_on_zero = ckpt_path is not None and trainer.is_global_zero
        history = _stash_log(out) if resumed_on_zero else None
        trainer.fit(task, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
        if history is not None and trainer.is_global_zero:
            _merge_log(out, history)
    seconds = time.perf_counter() - start
    best = _best_checkpoint(out, trainer)
    if not trainer.is_global_zero:
        return TrainResult(out, None, best, trainer.current_epoch, None, {}, seconds, {})
    run = _RunSummary(out, best, trainer.current_epoch, seconds, run_config)
    return _finish(task, data, info, run)


def _resolve_class_weights(info: ChipsInfo, loss_options: Mapping[str, Any]) -> dict[str, Any]:
    """``class_weights: auto``: damped inverse frequency of each class in the train chips.

    ``w_k = sqrt(median_f / f_k)`` over the classes present (median-frequency balancing with a
    square root, so a class 100x rarer weighs 10x, not 100x), scaled to a mean of 1; classes
    absent from the train split get weight 1 (they contribute no pixels anyway).
    """
    out = dict(loss_options)
    if out.get("class_weights") != "auto":
        return out
    index = ChipsFolder(Path(info.path)).index()
    train = index[index["split"] == "train"]
    names = info.classes.names
    counts = np.asarray(
        [float(train[f"px_{n}"].sum()) if f"px_{n}" in train else 0.0 for n in names]
    )
    present = counts > 0
    if not present.any():
        raise ConfigError(
            f"class_weights: auto found no labelled train pixels in {info.path / 'index.gpkg'}; "
            "give the weights as a list, one per class."
        )
    freq = counts / counts.sum()
    weights = np.ones(len(names))
    weights[present] = np.sqrt(np.median(freq[present]) / freq[present])
    weights = weights / weights.mean()
    out["class_weights"] = [round(float(w), 4) for w in weights]
    log.info("class_weights auto: %s", dict(zip(names, out["class_weights"], strict=True)))
    return out


def _input_recipe(info: ChipsInfo, options: TrainingOptions) -> InputRecipe:
    """The recipe of this run; ``dn_offset: auto`` reads the training scene's product metadata."""
    paths = ChipsFolder(info.path).scene_paths
    return InputRecipe(
        bands=info.bands,
        normalization=info.normalization,
        scale=options.scale,
        offset=resolve_offset(options.dn_offset, paths),
        indices=tuple(options.indices),
        index_bands=dict(options.index_bands),
        normalize=options.normalize,
    )


def _best_checkpoint(out: Path, trainer: pl.Trainer) -> Path:
    """The best checkpoint of the run (looked up in ``out`` if the run folder was moved)."""
    callback = trainer.checkpoint_callback
    last = out / "checkpoints" / "last.ckpt"
    if callback is None or not callback.best_model_path:
        return last
    best = Path(callback.best_model_path)
    if best.is_file():
        return best
    moved = out / "checkpoints" / best.name
    return moved if moved.is_file() else last


@dataclass(frozen=True)
class _RunSummary:
    out: Path
    best: Path
    epochs: int
    seconds: float
    config: dict[str, Any]


def _finish(
    task: SegmentationTask, data: ChipDataModule, info: ChipsInfo, run: _RunSummary
) -> TrainResult:
    """Rank 0 after fitting: best weights -> evaluation, model file, metrics.json, plots."""
    from geounet import _plots

    checkpoint = torch.load(run.best, map_location="cpu", weights_only=True)
    task.load_state_dict(checkpoint["state_dict"])
    best_epoch = int(checkpoint.get("epoch", run.epochs - 1))
    # Evaluate where training ran (a GPU stays a GPU); save_model_file copies to the CPU.
    model = task.inference_model.eval()
    options = run.config["options"]
    evaluation = evaluate_chips(
        model, data.val_set, batch_size=options["batch_size"], keep=options["val_samples"]
    )
    metrics = pixel_metrics(evaluation.confusion, info.classes.names)
    support = np.asarray(evaluation.confusion).sum(axis=1)
    no_negatives = no_negatives_message(
        [n for n, k in zip(info.classes.names, support, strict=True) if k > 0],
        "the validation labels",
    )
    if no_negatives is not None:
        log.warning("val mIoU %.3f: %s", metrics["miou"], no_negatives)
    summary = {
        "config": run.config,
        "epochs": run.epochs,
        "best_epoch": best_epoch,
        "monitor": MONITOR,
        "val_metrics": metrics,
        "train_chips": len(data.train_set),
        "val_chips": len(data.val_set),
        "fit_seconds": round(run.seconds, 1),
        "torch_version": torch.__version__,
        "lightning_version": pl.__version__,
    }
    if no_negatives is not None:
        summary["warnings"] = [no_negatives]
    metadata = modelfile.ModelMetadata(
        architecture=describe_model(model),
        bands=info.bands,
        normalization=info.normalization,
        classes=info.classes,
        chip_size=info.chip_size,
        res=info.res,
        crs_hint=info.crs,
        nodata=info.nodata,
        training=summary,
        recipe={}
        if data.train_set.recipe is None or data.train_set.recipe.is_default
        else data.train_set.recipe.to_dict(),
    )
    # The products (model file, metrics, plots) are published as one set; the checkpoints and
    # logs Lightning wrote in place stay (staged_output carries them over as hard links).
    with staged_output(run.out, owned=PRODUCT_NAMES) as work:
        modelfile.save_model_file(work / MODEL_FILE, model, metadata)
        write_text_atomic(
            work / "metrics.json", json.dumps(modelfile.json_ready(summary), indent=2) + "\n"
        )
        written = _plots.write_plots(
            work / "plots",
            metrics_csv=run.out / "logs" / "metrics.csv",
            evaluation=evaluation,
            info=info,
            best_epoch=best_epoch,
        )
    model_path = run.out / MODEL_FILE
    plots = {name: run.out / Path(p).relative_to(work) for name, p in written.items()}
    log.info("val mIoU %.3f (best epoch %d); wrote %s", metrics["miou"], best_epoch, model_path)
    return TrainResult(
        run.out, model_path, run.best, run.epochs, best_epoch, metrics, run.seconds, plots
    )
