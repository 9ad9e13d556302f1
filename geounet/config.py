"""Configuration models: YAML job files are validated here, then become keyword arguments.

Every model forbids unknown keys (a typo fails with the field's name) and validates ranges.
Relative paths in a YAML file are resolved against the file's folder, so a job folder can be
moved as a whole. Library functions never see these models: ``to_kwargs``-style methods turn
them into the explicit arguments the stage functions take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geounet.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TileConfig(_Model):
    """The ``tile`` section of a job (the options of ``geounet tile``)."""

    scene: list[Path] = Field(description="one multi-band raster, or single-band files to stack")
    out: Path = Field(description="output chips folder")
    labels: Path | None = Field(None, description="polygons (GPKG/GeoJSON/SHP) or a class raster")
    class_column: str | None = Field(None, description="label attribute holding the class values")
    class_map: Path | None = Field(None, description="YAML mapping attribute values to classes")
    chip_size: int = Field(256, ge=8, le=8192, description="chip side in pixels")
    stride: int | None = Field(None, ge=1, description="step between chips (default: chip_size)")
    edge: Literal["shift", "pad"] = Field("shift", description="last chip shifted inward or padded")
    max_nodata_fraction: float = Field(0.5, ge=0.0, le=1.0, description="skip chips above this")
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train, val, test fractions of spatial blocks"
    )
    split_block_chips: int = Field(2, ge=1, description="side of a split block, in chips")
    seed: int = Field(0, description="seed of the split draw")
    compress: Literal["zstd", "deflate", "lzw", "none"] = Field("zstd", description="chip codec")
    workers: int | None = Field(None, ge=1, description="threads (default: one per CPU)")

    @field_validator("scene")
    @classmethod
    def _some_scene(cls, value: list[Path]) -> list[Path]:
        if not value:
            raise ValueError("give at least one scene file")
        return value

    @model_validator(mode="after")
    def _stride_fits(self) -> TileConfig:
        if self.stride is not None and self.stride > self.chip_size:
            raise ValueError(f"stride {self.stride} > chip_size {self.chip_size} leaves gaps")
        return self

    def tiling_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`geounet.tiling.tile_scene` (options built here)."""
        from geounet.classes import ClassMap
        from geounet.tiling import TilingOptions

        options = TilingOptions(
            chip_size=self.chip_size,
            stride=self.stride,
            edge=self.edge,
            max_nodata_fraction=self.max_nodata_fraction,
            split_fractions=self.split_fractions,
            split_block_chips=self.split_block_chips,
            seed=self.seed,
            compress=self.compress,
            workers=self.workers,
        )
        class_map = ClassMap.from_yaml(self.class_map) if self.class_map else None
        return {
            "scene_paths": [str(p) for p in self.scene],
            "out_dir": self.out,
            "labels": self.labels,
            "class_map": class_map,
            "class_column": self.class_column,
            "options": options,
        }


_PATH_FIELDS = {"scene", "out", "labels", "class_map", "chips"}


def _resolve_paths(section: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative paths of a YAML section relative to the YAML file's folder."""
    out = dict(section)
    for key in _PATH_FIELDS & set(out):
        value = out[key]
        if value is None:
            continue
        if isinstance(value, list):
            out[key] = [str(base / v) if not Path(v).is_absolute() else v for v in value]
        elif not Path(str(value)).is_absolute():
            out[key] = str(base / str(value))
    return out


def read_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file (``what`` says what it should be)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {p}: {exc.strerror}.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p} must be a YAML mapping (of sections or keys).")
    return data


def load_section(
    path: str | Path | None, section: str, overrides: dict[str, Any], model: type[_Model]
) -> Any:
    """Build a section model from a YAML file (its ``section`` key) plus CLI overrides.

    Raises:
        ConfigError: Unknown keys, wrong types or out-of-range values, with the field names.
    """
    data: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(path)
        body = raw.get(section, raw)
        if not isinstance(body, dict):
            raise ConfigError(f"section {section!r} of {path} must be a mapping.")
        data = _resolve_paths(body, Path(path).resolve().parent)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model(**data)
    except ValidationError as exc:
        where = f"{path} [{section}]" if path else f"{section} options"
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid {where}:\n" + "\n".join(lines)) from exc


class ModelSection(_Model):
    """The ``train.model`` section: a registered model and its options."""

    name: str = Field("unet", description="registered model name (geounet.models.list_models())")
    options: dict[str, Any] = Field(
        default_factory=dict, description="architecture options, e.g. {depth: 3, base_channels: 16}"
    )


class OptimizerSection(_Model):
    """The ``train.optimizer`` section: optimiser and learning-rate schedule."""

    name: Literal["adamw", "adam", "sgd"] = Field("adamw", description="optimiser")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="decoupled weight decay (L2 for sgd)")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="per-step schedule after the warm-up"
    )
    warmup_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="share of steps with a linear warm-up (0.3: one-cycle)"
    )


class AugmentSection(_Model):
    """The ``train.augment`` section: random training augmentation."""

    dihedral: bool = Field(True, description="random flip/rotation (the 8 of the square)")
    crop_size: int | None = Field(None, ge=8, description="random square crop side, pixels")
    brightness: float = Field(0.0, ge=0.0, description="max offset, in band standard deviations")
    noise: float = Field(0.0, ge=0.0, description="Gaussian noise std, in band standard deviations")


Precision = Literal["32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"]


class TrainConfig(_Model):
    """The ``train`` section of a job (the options of ``geounet train``)."""

    chips: Path = Field(description="chips folder written by `geounet tile` (with labels)")
    out: Path = Field(description="output folder: model.safetensors, checkpoints, logs, plots")
    model: ModelSection = Field(default_factory=ModelSection)
    loss: str | dict[str, float] | list[dict[str, Any]] = Field(
        "ce+dice", description="loss name, sum ('ce+dice') or {name: weight}"
    )
    loss_options: dict[str, Any] = Field(
        default_factory=dict, description="loss options, e.g. {class_weights: [1, 1, 2, 2]}"
    )
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    epochs: int = Field(50, ge=1, description="maximum number of epochs")
    batch_size: int = Field(8, ge=1, description="chips per batch (per device)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0: main process)")
    precision: Precision = Field("32-true", description="Lightning precision; bf16-mixed on GPUs")
    accelerator: str = Field("auto", description="cpu, gpu, mps or auto")
    devices: int | str | list[int] = Field("auto", description="device count, list or 'auto'")
    strategy: str = Field("auto", description="Lightning strategy, e.g. ddp")
    seed: int = Field(0, description="seed of weights, shuffling and augmentation")
    deterministic: bool = Field(True, description="deterministic algorithms (reproducible runs)")
    patience: int | None = Field(15, ge=1, description="early-stopping patience in epochs")
    channels_last: bool = Field(True, description="channels-last memory layout (faster convs)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's)")
    tensorboard: bool = Field(False, description="also log to TensorBoard (needs tensorboard)")
    progress_bar: bool = Field(True, description="show a progress bar")
    val_samples: int = Field(6, ge=0, description="validation chips drawn in val_samples.png")

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`geounet.training.fit` (options built here)."""
        from geounet.data import Augment
        from geounet.training import OptimizerOptions, TrainingOptions

        options = TrainingOptions(
            model=self.model.name,
            model_options=dict(self.model.options),
            loss=self.loss,
            loss_options=dict(self.loss_options),
            optimizer=OptimizerOptions(**self.optimizer.model_dump()),
            augment=Augment(**self.augment.model_dump()),
            epochs=self.epochs,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            precision=self.precision,
            accelerator=self.accelerator,
            devices=self.devices,
            strategy=self.strategy,
            seed=self.seed,
            deterministic=self.deterministic,
            patience=self.patience,
            channels_last=self.channels_last,
            threads=self.threads,
            tensorboard=self.tensorboard,
            progress_bar=self.progress_bar,
            val_samples=self.val_samples,
        )
        return {"chips_dir": self.chips, "out_dir": self.out, "options": options}


def load_train_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from the ``train`` section of a YAML file plus overrides.

    Override keys may be dotted (``optimizer.lr``, ``model.name``) to set one field of a nested
    section; ``None`` values mean "not given".

    Raises:
        ConfigError: Unknown keys, wrong types or out-of-range values, with the field names.
    """
    flat = {k: v for k, v in overrides.items() if "." not in k}
    nested = {k: v for k, v in overrides.items() if "." in k and v is not None}
    cfg: TrainConfig = load_section(path, "train", flat, TrainConfig)
    if not nested:
        return cfg
    data = cfg.model_dump()
    for key, value in nested.items():
        section, _, name = key.partition(".")
        data[section] = {**data[section], name: value}
    try:
        return TrainConfig(**data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid train options:\n" + "\n".join(lines)) from exc
