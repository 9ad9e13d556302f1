"""The Lightning pieces of training: :class:`SegmentationTask` and :class:`ChipDataModule`.

Kept apart from :mod:`geounet.training` (which re-exports them) so each module stays small.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from geounet.data import Augment, ChipDataset, collate_samples
from geounet.errors import ConfigError, LabelError
from geounet.losses import LossSpec, create_loss
from geounet.models import create_model

if TYPE_CHECKING:
    from geounet.radiometry import InputRecipe, SpectralJitter

MONITOR = "val_miou"
"""The metric checkpoints and early stopping follow (validation mean IoU, higher is better)."""


@dataclass(frozen=True)
class OptimizerOptions:
    """Optimiser and learning-rate schedule.

    Attributes:
        name: ``adamw`` (decoupled weight decay), ``adam`` or ``sgd`` (momentum 0.9, Nesterov).
        lr: Peak learning rate.
        weight_decay: Weight decay.
        schedule: ``cosine``: after the warm-up the rate follows a cosine from ``lr`` down to
            ``lr / 100`` at the last step; ``constant``: it stays at ``lr``.
        warmup_fraction: Share of all steps over which the rate rises linearly from ``lr / 100``
            (``0.3`` with ``cosine`` gives the one-cycle shape).
    """

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "adam", "sgd"):
            raise ConfigError(f"optimizer {self.name!r} is not one of adamw, adam, sgd.")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule {self.schedule!r} is not one of cosine, constant.")
        if not self.lr > 0 or self.weight_decay < 0 or not 0 <= self.warmup_fraction < 1:
            raise ConfigError(
                f"need lr > 0, weight_decay >= 0 and warmup_fraction in [0, 1); got {self}."
            )


def _lr_factor(step: int, *, total: int, warmup: float, schedule: str) -> float:
    """Learning-rate multiplier at ``step`` of ``total`` (linear warm-up, then the schedule)."""
    warm = int(warmup * total)
    if step < warm:
        return 0.01 + 0.99 * step / warm
    if schedule == "constant":
        return 1.0
    progress = min((step - warm) / max(total - warm, 1), 1.0)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))


class SegmentationTask(pl.LightningModule):
    """Semantic segmentation of chips with a registered model, a loss and torchmetrics.

    Batches are sample dicts (``image`` ``B x C x H x W`` float32, ``mask`` ``B x H x W``
    int64 with 255 = ignore). Logs ``train_loss``, ``val_loss``, ``val_miou``, ``val_mf1``,
    ``val_macc``, ``val_oa`` and per class ``val_iou_<name>``, ``val_f1_<name>``,
    ``val_acc_<name>``. The arguments are saved as hyperparameters in every checkpoint.

    Under DDP every logged value covers all processes: the metric states (confusion counts)
    are summed across processes when they are computed, and the losses are averaged.

    Args:
        architecture: ``{"name", "in_channels", "num_classes", "options"}`` for
            :func:`geounet.models.create_model`.
        class_names: One name per output channel, for the per-class metric names.
        loss: Loss spec for :func:`geounet.losses.create_loss`.
        loss_options: Its options.
        optimizer: :class:`OptimizerOptions` fields as a dict (default options when None).
        ignore_index: Label value excluded from loss and metrics.
        channels_last: Run the model in channels-last memory layout.
        ema: Decay of an exponential moving average of the weights (``None``: none). The
            average (:attr:`ema_model`, saved in every checkpoint) is what validation scores
            and :attr:`inference_model` returns; the optimiser steps the raw weights.

    Raises:
        ConfigError: Unknown model, loss or option; fewer than 2 classes.
    """

    def __init__(
        self,
        architecture: Mapping[str, Any],
        class_names: Sequence[str],
        *,
        loss: LossSpec = "ce+dice",
        loss_options: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        ignore_index: int = 255,
        channels_last: bool = False,
        ema: float | None = None,
    ) -> None:
        from torchmetrics import MetricCollection
        from torchmetrics.classification import (
            MulticlassAccuracy,
            MulticlassConfusionMatrix,
            MulticlassF1Score,
            MulticlassJaccardIndex,
        )

        super().__init__()
        self.save_hyperparameters()
        arch = dict(architecture)
        k = int(arch["num_classes"])
        if k < 2 or len(class_names) != k:
            raise ConfigError(
                f"need >= 2 classes and one name per output; got num_classes={k} and names "
                f"{list(class_names)}."
            )
        self.class_names = [str(n) for n in class_names]
        self.model = create_model(
            str(arch["name"]),
            in_channels=int(arch["in_channels"]),
            num_classes=k,
            **dict(arch.get("options") or {}),
        )
        self.loss_fn = create_loss(
            loss, num_classes=k, ignore_index=ignore_index, **dict(loss_options or {})
        )
        self.optim = OptimizerOptions(**dict(optimizer or {}))
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if ema is not None and not 0 < ema < 1:
            raise ConfigError(f"ema must be in (0, 1) or None, got {ema}.")
        self.ema_decay = ema
        self.ema_model: torch.nn.Module | None = None
        if ema is not None:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        common = {"num_classes": k, "ignore_index": ignore_index}
        self.val_metrics = MetricCollection(
            {
                "iou": MulticlassJaccardIndex(average="none", **common),
                "miou": MulticlassJaccardIndex(average="macro", **common),
                "f1": MulticlassF1Score(average="none", **common),
                "mf1": MulticlassF1Score(average="macro", **common),
                "acc": MulticlassAccuracy(average="none", **common),
                "macc": MulticlassAccuracy(average="macro", **common),
                "oa": MulticlassAccuracy(average="micro", **common),
            },
            prefix="val_",
        )
        self.val_confusion = MulticlassConfusionMatrix(**common)
        self.last_val_confusion: np.ndarray | None = None
        self.run_config: dict[str, Any] | None = None

    @property
    def inference_model(self) -> torch.nn.Module:
        """The weights to validate and ship: the moving average when ``ema`` is set."""
        return self.ema_model if self.ema_model is not None else self.model

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``B x K x H x W`` of a normalised ``B x C x H x W`` batch (raw weights)."""
        return self._logits(self.model, x)

    def _logits(self, model: torch.nn.Module, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits: Tensor = model(x)
        return logits

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the weight average towards the weights of this step."""
        if self.ema_model is None or self.ema_decay is None:
            return
        step = self.global_step
        # The usual warm-up (decay (1 + t) / (10 + t) early on), so the random initial
        # weights are forgotten within the first epochs of a short run.
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for avg, new in zip(self.ema_model.parameters(), self.model.parameters(), strict=True):
                avg.lerp_(new.detach(), 1.0 - decay)
            for avg, new in zip(self.ema_model.buffers(), self.model.buffers(), strict=True):
                if avg.dtype.is_floating_point:
                    avg.lerp_(new, 1.0 - decay)  # batch-norm statistics follow the weights
                else:
                    avg.copy_(new)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Loss of one batch; logged as ``train_loss`` per step and per epoch."""
        image, mask = batch["image"], batch["mask"]
        loss: Tensor = self.loss_fn(self(image), mask)
        self.log(
            "train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
            batch_size=len(image), sync_dist=True,
        )  # fmt: skip
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate the loss and the metric states of one validation batch."""
        image, mask = batch["image"], batch["mask"]
        logits = self._logits(self.inference_model, image)
        loss = self.loss_fn(logits, mask)
        preds = logits.argmax(dim=1)
        self.val_metrics.update(preds, mask)
        self.val_confusion.update(preds, mask)
        self.log(
            "val_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(image), sync_dist=True
        )

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's metrics (mean and per class by name) and keep the confusion matrix."""
        # compute() sums the states of every DDP process first (torchmetrics' sync_on_compute),
        # so each rank logs the same, global values; they need no sync_dist.
        values = self.val_metrics.compute()
        for key, value in values.items():
            if value.ndim == 0:
                self.log(key, value, prog_bar=key == MONITOR)
            else:
                stem = key.removeprefix("val_")
                for name, v in zip(self.class_names, value, strict=True):
                    self.log(f"val_{stem}_{name}", v)
        self.last_val_confusion = self.val_confusion.compute().cpu().numpy()
        self.val_metrics.reset()
        self.val_confusion.reset()

    def configure_optimizers(self) -> Any:
        """AdamW/Adam/SGD with a per-step warm-up + cosine (or constant) schedule."""
        o = self.optim
        params = self.model.parameters()
        optimizer: torch.optim.Optimizer
        if o.name == "adamw":
            optimizer = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        elif o.name == "adam":
            optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                params, lr=o.lr, momentum=0.9, nesterov=True, weight_decay=o.weight_decay
            )
        # The factor is recomputed from the current run's step count, so a resumed run with
        # more epochs stretches the schedule instead of failing as OneCycleLR would.
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        factor = partial(_lr_factor, total=total, warmup=o.warmup_fraction, schedule=o.schedule)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the resolved run configuration in the checkpoint (plain JSON types)."""
        if self.run_config is not None:
            checkpoint["geounet_config"] = self.run_config


class ChipDataModule(pl.LightningDataModule):
    """Train and val :class:`~geounet.data.ChipDataset` loaders of a chips folder.

    Args:
        chips_dir: The chips folder.
        batch_size: Chips per batch.
        num_workers: DataLoader worker processes.
        augment: Training augmentation (validation chips are never augmented).
        recipe: Input recipe (scaling, offset, index channels) of both splits.
        jitter: Spectral gain/offset jitter of the training split.
        cache_mb: In-memory chip cache of each split, MiB (see :class:`ChipDataset`).
    """

    def __init__(
        self,
        chips_dir: str | Path,
        *,
        batch_size: int,
        num_workers: int = 0,
        augment: Augment | None = None,
        recipe: InputRecipe | None = None,
        jitter: SpectralJitter | None = None,
        cache_mb: float = 0.0,
    ) -> None:
        super().__init__()
        self.chips_dir = Path(chips_dir)
        self.batch_size, self.num_workers, self.augment = batch_size, num_workers, augment
        self.train_set = ChipDataset(
            self.chips_dir, "train", transforms=augment, recipe=recipe, jitter=jitter,
            cache_mb=cache_mb,
        )  # fmt: skip
        self.val_set = ChipDataset(self.chips_dir, "val", recipe=recipe, cache_mb=cache_mb)
        for split, dataset in (("train", self.train_set), ("val", self.val_set)):
            if len(dataset) == 0:
                raise LabelError(
                    f"{self.chips_dir} has no {split} chip with a labelled pixel; re-tile with "
                    "other --split fractions or a smaller --split-block so both splits get labels."
                )

    def _loader(
        self, dataset: ChipDataset, shuffle: bool, sampler: Sampler[int] | None = None
    ) -> DataLoader[Any]:
        trainer = self.trainer
        on_cuda = trainer is not None and trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            pin_memory=on_cuda,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        """Shuffled, augmented training batches."""
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        """Validation batches in chip-id order; under DDP each process gets a disjoint share."""
        return self._loader(self.val_set, shuffle=False, sampler=self._val_sampler())

    def _val_sampler(self) -> Sampler[int] | None:
        """Every val chip exactly once across processes (None: a single process).

        Lightning's default DistributedSampler pads the shares to equal length by repeating
        chips, which would count them twice in the metrics. Shares may differ by one chip;
        that is safe because each process runs at least one batch (DDP syncs buffers on the
        first forward only when no gradient is taken).
        """
        trainer = self.trainer
        if trainer is None or trainer.world_size < 2:
            return None
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        if len(self.val_set) < trainer.world_size:
            warnings.warn(
                f"{len(self.val_set)} val chips for {trainer.world_size} processes: some chips "
                "are validated twice, so the logged metrics are approximate (metrics.json is "
                "exact); tile with more val chips.",
                stacklevel=2,
            )
            return None
        return UnrepeatedDistributedSampler(
            self.val_set, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
        )
