"""``geounet train``: train a model on a chips folder and write a self-describing model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geounet.cli._errors import guarded


def _devices(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    """``2`` -> 2, ``0,1`` -> [0, 1], ``auto`` -> ``auto``."""
    if value is None or value == "auto":
        return value
    try:
        parts = [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"expected a count, a list like 0,1 or 'auto', got {value!r}"
        ) from None
    return parts[0] if len(parts) == 1 and "," not in value else parts


_PRECISIONS = ["32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"]

# Flags that set one field of a nested config section.
_NESTED = {
    "model_name": "model.name",
    "lr": "optimizer.lr",
    "optimizer": "optimizer.name",
    "schedule": "optimizer.schedule",
}


@click.command(context_settings={"show_default": True})
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Job YAML; its 'train' section gives defaults that flags override.",
)
@click.option(
    "--chips",
    type=click.Path(file_okay=False, path_type=Path),
    help=("Chips folder written by `geounet tile --labels ...` (required here or in the config)."),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Output folder: model.safetensors, metrics.json, checkpoints/, logs/, plots/ "
        "(required here or in the config)."
    ),
)
@click.option(
    "--model",
    "model_name",
    help=(
        "Registered model name (unet, residual_unet, attention_unet, unet_plus_plus, "
        "efficient_unet).  [default: unet]"
    ),
)
@click.option(
    "--loss",
    help="Loss: a name, a sum like ce+dice or 0.5*focal+dice.  [default: ce+dice]",
)
@click.option("--lr", type=float, help="Peak learning rate.  [default: 0.001]")
@click.option(
    "--optimizer",
    type=click.Choice(["adamw", "adam", "sgd"]),
    help="Optimiser.  [default: adamw]",
)
@click.option(
    "--schedule",
    type=click.Choice(["cosine", "constant"]),
    help="Learning-rate schedule after the linear warm-up.  [default: cosine]",
)
@click.option(
    "--epochs",
    type=int,
    help="Maximum number of epochs (the total, also with --resume).  [default: 50]",
)
@click.option("--batch-size", type=int, help="Chips per batch and device.  [default: 8]")
@click.option(
    "--num-workers",
    type=int,
    help="DataLoader worker processes (0: read in the main process).  [default: 0]",
)
@click.option(
    "--precision",
    type=click.Choice(_PRECISIONS),
    help="Numeric precision; bf16-mixed on recent GPUs.  [default: 32-true]",
)
@click.option("--accelerator", help="cpu, gpu, mps or auto.  [default: auto]")
@click.option(
    "--devices",
    callback=_devices,
    help="Device count, ids like 0,1, or auto.  [default: auto]",
)
@click.option(
    "--num-nodes",
    type=int,
    help="Machines taking part (DDP across nodes; --devices is per node).  [default: 1]",
)
@click.option("--strategy", help="Lightning strategy, e.g. ddp for several GPUs.  [default: auto]")
@click.option("--seed", type=int, help="Seed of weights, shuffling and augmentation.  [default: 0]")
@click.option(
    "--patience",
    type=int,
    help="Stop after this many epochs without a better validation mIoU.  [default: 15]",
)
@click.option("--threads", type=int, help="torch CPU threads.  [default: torch's choice]")
@click.option(
    "--folds",
    type=click.IntRange(min=3),
    help=(
        "Also run K-fold spatial cross-validation (folds of split blocks, overlapping chips "
        "buffered) into OUT/folds: a model per fold, mean and std of every metric."
    ),
)
@click.option(
    "--fold-models/--scores-only",
    default=None,
    help="Keep each fold's model file, or only the fold scores.  [default: --fold-models]",
)
@click.option(
    "--baseline",
    type=click.Choice(["random_forest", "none"]),
    default="random_forest",
    help="Score a per-pixel random forest on the same test pixels of every fold (with --folds).",
)
@click.option(
    "--resume",
    is_flag=True,
    help=(
        "Continue the run in --out from checkpoints/last.ckpt; the epoch count goes on "
        "(resume only your own runs)."
    ),
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in --out.")
@click.option(
    "--no-progress",
    "no_progress",
    is_flag=True,
    help="Hide the progress bar (e.g. in CI logs).",
)
@guarded
def train(
    config_path: Path | None,
    resume: bool,
    overwrite: bool,
    no_progress: bool,
    baseline: str,
    **flags: object,
) -> None:
    """Train a segmentation model on the chips of `geounet tile` and write OUT/model.safetensors.

    Trains on the chips of the 'train' split, validates on 'val' after every epoch (per-class
    and mean IoU, F1 and accuracy; label 255 ignored), keeps the best epoch by validation mIoU
    and writes it as a self-describing model file (safetensors weights + JSON metadata: model,
    bands, normalisation, classes, chip and pixel size, training summary), with metrics.json,
    CSV logs and plots (curves, confusion matrix, validation chips) in OUT.

    With --folds K it then also cross-validates: the chips are dealt into K spatially disjoint
    folds of split blocks; each fold is tested once by a model trained on the others (the next
    fold picks its epoch), beside a per-pixel random forest on the same test pixels. OUT/folds
    holds the per-fold runs, folds.gpkg and metrics.json with the mean and std of every metric.

    Every option can also be set in the 'train' section of --config; a flag overrides it.
    """
    from contextlib import nullcontext

    from geounet._lock import folder_lock, is_launch_rank_zero
    from geounet.cli._logging import tame_lightning
    from geounet.config import load_train_config
    from geounet.training import fit

    tame_lightning()

    overrides = {_NESTED.get(k, k): v for k, v in flags.items()}
    if no_progress:
        overrides["progress_bar"] = False
    cfg = load_train_config(config_path, overrides)
    # The other ranks of a DDP run start this command again inside the same run.
    lock = folder_lock(cfg.out, beside=True) if is_launch_rank_zero() else nullcontext()
    kwargs = cfg.fit_kwargs()
    if cfg.folds is not None:
        from geounet.folds import check_output

        check_output(cfg.out / "folds", overwrite=overwrite or resume)
    with lock:
        result = fit(**kwargs, resume=resume, overwrite=overwrite)
        if cfg.folds is not None and result.model_path is not None:
            _cross_validate(cfg, kwargs["options"], baseline)
    if result.model_path is None:  # a non-zero DDP rank: rank 0 reports
        return
    m = result.metrics
    per_class = ", ".join(
        f"{k.removeprefix('iou_')} {v:.3f}" for k, v in m.items() if k.startswith("iou_")
    )
    click.echo(
        f"trained {result.epochs} epochs in {result.seconds / 60:.1f} min; best epoch "
        f"{(result.best_epoch or 0) + 1}: val mIoU {m['miou']:.3f} ({per_class}), "
        f"accuracy {m['oa']:.3f}\nwrote {result.model_path.resolve()} and plots in "
        f"{(result.out_dir / 'plots').resolve()}"
    )


def _cross_validate(cfg: Any, options: Any, baseline: str) -> None:
    """Run the cross-validation of ``--folds`` into OUT/folds and print its summary."""
    from geounet.baseline import ForestOptions
    from geounet.folds import cross_validate

    result = cross_validate(
        cfg.chips, cfg.out / "folds", folds=cfg.folds, options=options,
        baseline=ForestOptions() if baseline == "random_forest" else None,
        keep_models=cfg.fold_models, overwrite=True,
    )  # fmt: skip
    for name, metrics in result.summary.items():
        miou = metrics["miou"]
        click.echo(
            f"{cfg.folds}-fold spatial cross-validation, {name}: test mIoU "
            f"{miou['mean']:.3f} +- {miou['std'] or 0.0:.3f}"
        )
    click.echo(f"wrote {result.metrics_path.resolve()}")
