"""Configuration models: YAML job files are validated here, then become keyword arguments.

Every model forbids unknown keys (a typo fails with the field's name) and validates ranges.
Relative paths in a YAML file are resolved against the file's folder, so a job folder can be
moved as a whole. Library functions never see these models: ``to_kwargs``-style methods turn
them into the explicit arguments the stage functions take.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from geounet._documents import (  # noqa: F401  (re-exported: config.read_yaml is public)
    MAX_YAML_ALIASES,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    load_yaml_text,
    read_yaml,
)
from geounet._nodata import nodata_rule_from_json
from geounet._paths import gdal_path, is_virtual
from geounet.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_SCENE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _scene_path(value: Any) -> Any:
    return gdal_path(value) if isinstance(value, str | Path) else value


ScenePath = Annotated[str, BeforeValidator(_scene_path)]
"""A scene file as GDAL opens it: a local path or a ``/vsi...``/URL path kept verbatim (a
``Path`` would collapse the ``//`` of ``/vsicurl/https://...``)."""


class SceneEntry(_Model):
    """One scene of ``tile.scenes``: a name, its files and (optionally) its own labels."""

    name: str = Field(
        pattern=_SCENE_NAME,
        description="scene name: chip-id prefix, `scene` column of the index, job subfolder "
        "(letters, digits, _ . -)",
    )
    scene: list[ScenePath] = Field(
        description="one multi-band raster, or single-band files to stack"
    )
    labels: Path | None = Field(
        None, description="this scene's polygons or class raster (default: `tile.labels`)"
    )

    @field_validator("scene", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    @field_validator("scene")
    @classmethod
    def _some_scene(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one scene file")
        return value


class SplitSection(_Model):
    """The ``tile.split`` section: spatial blocks within each scene, or whole scenes held out."""

    by: Literal["block", "scene"] = Field(
        "block",
        description="'block': spatial blocks within every scene (split_fractions, "
        "split_block_chips); 'scene': the scenes named in test/val are held out whole",
    )
    test: list[str] = Field(
        default_factory=list, description="with by: scene, the scenes (names) of the test split"
    )
    val: list[str] = Field(
        default_factory=list,
        description="with by: scene, the scenes of the val split (default: spatial blocks of "
        "the training scenes, val's share of split_fractions)",
    )

    @model_validator(mode="after")
    def _names_for_scene_split(self) -> SplitSection:
        if self.by == "block" and (self.test or self.val):
            raise ValueError("test/val name whole scenes; set `by: scene` to hold them out")
        if self.by == "scene" and not self.test:
            raise ValueError("by: scene needs the test scenes: `test: [name, ...]`")
        both = sorted(set(self.test) & set(self.val))
        if both:
            raise ValueError(f"scenes {both} are in both test and val; give each one split")
        return self


class TileConfig(_Model):
    """The ``tile`` section of a job (the options of ``geounet tile``)."""

    scene: list[ScenePath] | None = Field(
        None,
        description="one multi-band raster, or single-band files to stack (or give `scenes`)",
    )
    scenes: list[SceneEntry] | None = Field(
        None,
        description="several scenes tiled into one chips set: [{name, scene, labels}, ...] "
        "(instead of `scene`; see tile.scenes[] below)",
    )
    out: Path = Field(description="output chips folder")
    labels: Path | None = Field(
        None,
        description="polygons (GPKG/GeoJSON/SHP) or a class raster (with `scenes`: of every "
        "scene that names none)",
    )
    class_column: str | None = Field(None, description="label attribute holding the class values")
    class_map: Path | None = Field(
        None, description="class-map YAML: classes and the values of each (docs/labels.md)"
    )
    classes_from_labels: bool | None = Field(
        None,
        description="take the classes from the class raster (its categories, colours or "
        "distinct codes); default: yes when no class_map is given",
    )
    background: Literal["ignore", "unlabelled"] = Field(
        "ignore",
        description="pixels outside every polygon: ignored (255), or the background class "
        "('unlabelled': footprint labels)",
    )
    background_class: str | None = Field(
        None, description="class of the unlabelled pixels (default: class 0)"
    )
    ignore_buffer_m: float = Field(
        0.0, ge=0, description="ring of ignore around the polygons (background: unlabelled)"
    )
    bands: str | list[str | int] | None = Field(
        None,
        description="bands to tile, in order: names or 1-based indexes (B02,B03,B04,B08 or "
        "2,3,4,8); default: every band of the scene",
    )
    display_bands: str | list[str | int] | None = Field(
        None,
        description="red, green, blue bands of true-colour maps: names, 1-based indexes or a "
        "preset (sentinel2, landsat8-9, landsat5-7, planetscope4, planetscope8, naip); "
        "default: from the band names",
    )
    chip_size: int = Field(256, ge=8, le=8192, description="chip side in pixels")
    stride: int | None = Field(None, ge=1, description="step between chips (default: chip_size)")
    edge: Literal["shift", "pad"] = Field("shift", description="last chip shifted inward or padded")
    max_nodata_fraction: float = Field(0.5, ge=0.0, le=1.0, description="skip chips above this")
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train, val, test fractions of spatial blocks"
    )
    split_block_chips: int = Field(2, ge=1, description="side of a split block, in chips")
    seed: int = Field(0, description="seed of the split draw (scene k of `scenes`: seed + k)")
    split: SplitSection = Field(
        default_factory=SplitSection, description="spatial blocks or whole scenes held out"
    )
    compress: Literal["zstd", "deflate", "lzw", "none"] = Field("zstd", description="chip codec")
    workers: int | None = Field(None, ge=1, description="threads (default: one per CPU)")
    nodata: float | list[float | None] | None = Field(
        None,
        description="nodata of the scene files, replacing theirs: one value, or one per band "
        "(null keeps a band's own); masks and NaN stay nodata",
    )

    @field_validator("scene")
    @classmethod
    def _some_scene(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("give at least one scene file")
        return value

    @model_validator(mode="after")
    def _one_kind_of_scene(self) -> TileConfig:
        if (self.scene is None) == (self.scenes is None):
            raise ValueError(
                "give exactly one of `scene` (one scene) and `scenes` (a list of them)"
            )
        if self.scenes is not None:
            names = [s.name for s in self.scenes]
            doubles = sorted({n for n in names if names.count(n) > 1})
            if not names or doubles:
                raise ValueError(f"`scenes` needs scenes with distinct names, got {names}")
        split = self.split
        if split.by == "scene":
            names = [s.name for s in self.scenes or []]
            if self.scenes is None:
                raise ValueError("split by: scene needs several scenes: give `scenes`")
            unknown = sorted(set(split.test + split.val) - set(names))
            if unknown:
                raise ValueError(f"split names unknown scenes {unknown}; the scenes are {names}")
            if not set(names) - set(split.test + split.val):
                raise ValueError("split by: scene holds out every scene; leave one to train on")
        return self

    @model_validator(mode="after")
    def _stride_fits(self) -> TileConfig:
        if self.stride is not None and self.stride > self.chip_size:
            raise ValueError(f"stride {self.stride} > chip_size {self.chip_size} leaves gaps")
        if self.background == "ignore" and (self.ignore_buffer_m or self.background_class):
            raise ValueError("ignore_buffer_m and background_class need background: unlabelled")
        return self

    def scene_names(self) -> list[str] | None:
        """The names of ``scenes``, or ``None`` for a one-scene (``scene``) section."""
        return None if self.scenes is None else [s.name for s in self.scenes]

    def scene_files(self) -> list[str | Path]:
        """Every scene file and label file the section reads (for fingerprints)."""
        if self.scenes is None:
            return [*(self.scene or []), *([self.labels] if self.labels else [])]
        files = [p for s in self.scenes for p in s.scene]
        return files + [lab for lab in self.scene_labels().values() if lab is not None]

    def scene_labels(self) -> dict[str, Path | None]:
        """Scene name -> its labels (its own, else ``labels``); only for ``scenes``."""
        return {s.name: s.labels or self.labels for s in self.scenes or []}

    def tiling_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`geounet.tiling.tile_scene` (a one-scene section).

        Raises:
            ConfigError: The section gives ``scenes`` (use :meth:`scene_set_kwargs`).
        """
        if self.scene is None:
            raise ConfigError(
                "this tile section has `scenes`; tile them with tile_scene_set (`geounet tile "
                "--config` does), not one scene at a time."
            )
        kwargs = self._common_kwargs()
        return {"scene_paths": [str(p) for p in self.scene], "labels": self.labels, **kwargs}

    def scene_set_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`geounet.tiling.tile_scene_set`, one scene or many."""
        from geounet.tiling import SceneSource

        kwargs = self._common_kwargs()
        if self.scenes is None:
            paths = tuple(str(p) for p in self.scene or [])
            return {"scenes": [SceneSource(paths, labels=self.labels)], **kwargs}
        split = self.split
        held = {n: "test" for n in split.test} | {n: "val" for n in split.val}
        # Held-out scenes without named val scenes: val comes from spatial blocks of the
        # training scenes (val's share of the fractions), the test split from the test scenes.
        rest = "train" if split.val else None
        if split.by == "scene" and not split.val:
            f_val = self.split_fractions[1]
            options = kwargs["options"]
            kwargs["options"] = replace(options, split_fractions=(1.0 - f_val, f_val, 0.0))
        labels = self.scene_labels()
        sources = [
            SceneSource(
                tuple(str(p) for p in s.scene),
                name=s.name,
                labels=labels[s.name],
                split=held.get(s.name, rest) if split.by == "scene" else None,  # type: ignore[arg-type]
            )
            for s in self.scenes
        ]
        return {"scenes": sources, **kwargs}

    def _common_kwargs(self) -> dict[str, Any]:
        from geounet.classes import ClassMap
        from geounet.labels import LabelOptions
        from geounet.tiling import TilingOptions

        display = self.display_bands
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
            nodata=nodata_rule_from_json(self.nodata),
            labels=LabelOptions(
                background=self.background,
                background_class=self.background_class,
                ignore_buffer_m=self.ignore_buffer_m,
                classes_from_labels=self.classes_from_labels,
            ),
            display_bands=tuple(display) if isinstance(display, list) else display,
            bands=tuple(self.bands) if isinstance(self.bands, list) else self.bands,
        )
        class_map = ClassMap.from_yaml(self.class_map) if self.class_map else None
        return {
            "out_dir": self.out,
            "class_map": class_map,
            "class_column": self.class_column,
            "options": options,
        }


_PATH_FIELDS = {"scene", "out", "labels", "class_map", "chips", "reference"}

PACKAGE_PREFIX = "geounet:"
"""Paths starting with this are inside the installed package (``geounet:sample/...``), so a
job on the bundled sample runs wherever the job file is copied to."""


def resolve_path(value: str | Path, base: Path) -> str:
    """A config path made absolute: ``geounet:`` paths in the package, others under ``base``."""
    text = str(value)
    if text.startswith(PACKAGE_PREFIX):
        return str(Path(__file__).resolve().parent / text[len(PACKAGE_PREFIX) :])
    if is_virtual(text):  # /vsis3/..., s3://..., https://...: GDAL's, never under base
        return gdal_path(text)
    return text if Path(text).is_absolute() else str(base / text)


def _resolve_paths(section: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative paths of a YAML section relative to the YAML file's folder."""
    out = dict(section)
    if isinstance(out.get("scenes"), list):  # tile.scenes: a list of {name, scene, labels}
        out["scenes"] = [
            _resolve_paths(entry, base) if isinstance(entry, dict) else entry
            for entry in out["scenes"]
        ]
    for key in _PATH_FIELDS & set(out):
        value = out[key]
        if value is None:
            continue
        if isinstance(value, list):
            out[key] = [resolve_path(v, base) for v in value]
        else:
            out[key] = resolve_path(value, base)
    return out


_OVERRIDE_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")


def parse_override(item: str) -> tuple[str, Any]:
    """Split a ``--set KEY=VALUE`` item; VALUE is parsed as YAML (``5``, ``true``, ``[a, b]``).

    Raises:
        ConfigError: No ``=``, a key that is not dotted names, or a VALUE that is not plain
            YAML; the message quotes the item and shows the expected form.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not _OVERRIDE_KEY.fullmatch(key):
        raise ConfigError(
            f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. --set train.epochs=5 "
            "or --set predict.device=cuda."
        )
    value = load_yaml_text(text, f"--set {item!r}")
    return key, value


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
    gain: float = Field(
        0.0, ge=0.0, lt=1.0, description="per-band random gain in [1-gain, 1+gain] (spectral)"
    )
    offset: float = Field(
        0.0, ge=0.0, description="per-band random offset in [-offset, offset], input units"
    )


IndexName = Literal["ndvi", "ndwi", "ndbi"]


class InputSection(_Model):
    """The ``train.input`` section: how scene pixels become model input (kept in the model)."""

    scale: Literal["none", "reflectance"] | float = Field(
        "none", description="'reflectance' (DN / 10000: Sentinel-2, Landsat C1), 'none' or a factor"
    )
    dn_offset: float | Literal["auto"] = Field(
        "auto", description="DN added to harmonise the training scene; auto: product metadata"
    )
    indices: list[IndexName] = Field(
        default_factory=list, description="index channels appended to the bands"
    )
    index_bands: dict[Literal["red", "green", "nir", "swir1"], str] = Field(
        default_factory=lambda: {"red": "B04", "green": "B03", "nir": "B08", "swir1": "B11"},
        description="band name of each index role (Landsat 8/9: B4, B3, B5, B6)",
    )
    normalize: Literal["training", "scene"] = Field(
        "training", description="band statistics: the training scene's, or each scene's own"
    )


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
        default_factory=dict,
        description="loss options, e.g. {class_weights: [1, 1, 2, 2]} or {class_weights: auto}",
    )
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    input: InputSection = Field(default_factory=InputSection)
    epochs: int = Field(50, ge=1, description="maximum number of epochs")
    batch_size: int = Field(8, ge=1, description="chips per batch (per device)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0: main process)")
    cache_mb: float = Field(
        1024, ge=0, description="keep train/val chips in memory up to this many MiB each (0: off)"
    )
    ema: float | None = Field(
        None, gt=0, lt=1, description="decay of a moving average of the weights (e.g. 0.99)"
    )
    precision: Precision = Field("32-true", description="Lightning precision; bf16-mixed on GPUs")
    accelerator: str = Field("auto", description="cpu, gpu, mps or auto")
    devices: int | str | list[int] = Field(
        "auto", description="devices per node: a count, a list of ids or 'auto'"
    )
    num_nodes: int = Field(1, ge=1, description="machines taking part (DDP across nodes)")
    strategy: str = Field("auto", description="Lightning strategy, e.g. ddp")
    seed: int = Field(0, description="seed of weights, shuffling and augmentation")
    deterministic: bool = Field(True, description="deterministic algorithms (reproducible runs)")
    patience: int | None = Field(15, ge=1, description="early-stopping patience in epochs")
    channels_last: bool = Field(True, description="channels-last memory layout (faster convs)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's)")
    tensorboard: bool = Field(False, description="also log to TensorBoard (needs tensorboard)")
    progress_bar: bool = Field(True, description="show a progress bar")
    val_samples: int = Field(6, ge=0, description="validation chips drawn in val_samples.png")
    folds: int | None = Field(
        None, ge=3, description="also run K-fold spatial cross-validation into out/folds (K >= 3)"
    )
    fold_models: bool = Field(True, description="keep each fold's model file (false: scores only)")

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`geounet.training.fit` (options built here)."""
        from geounet.data import Augment
        from geounet.radiometry import SENTINEL2_INDEX_BANDS, SpectralJitter, parse_scale
        from geounet.training import OptimizerOptions, TrainingOptions

        augment = self.augment.model_dump()
        spectral = SpectralJitter(gain=augment.pop("gain"), offset=augment.pop("offset"))

        options = TrainingOptions(
            model=self.model.name,
            model_options=dict(self.model.options),
            loss=self.loss,
            loss_options=dict(self.loss_options),
            optimizer=OptimizerOptions(**self.optimizer.model_dump()),
            augment=Augment(**augment),
            spectral=spectral,
            scale=parse_scale(self.input.scale),
            dn_offset=self.input.dn_offset,
            indices=tuple(self.input.indices),
            index_bands={**SENTINEL2_INDEX_BANDS, **self.input.index_bands},
            normalize=self.input.normalize,
            epochs=self.epochs,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            cache_mb=self.cache_mb,
            ema=self.ema,
            precision=self.precision,
            accelerator=self.accelerator,
            devices=self.devices,
            num_nodes=self.num_nodes,
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


class PredictSection(_Model):
    """The ``predict`` section of a job (the options of ``geounet predict``)."""

    scene: list[ScenePath] | None = Field(
        None, description="scene to predict, same bands as the model (default: the tiled scene)"
    )
    chip_size: int | None = Field(
        None, ge=8, description="chip side in pixels (default: the model's training chip size)"
    )
    overlap: int | None = Field(None, ge=0, description="pixels shared by neighbouring chips")
    batch_size: int = Field(4, ge=1, description="chips per forward pass")
    blend: Literal["gaussian", "cosine", "crop"] = Field("gaussian", description="overlap blend")
    tta: bool = Field(False, description="average the 8 flips/rotations (8x the compute)")
    probabilities: bool = Field(True, description="also write probabilities.tif")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")
    readers: int | None = Field(
        None, ge=1, description="threads reading chips ahead (default: 2 on CPU, 1 a core on GPU)"
    )
    compile: bool = Field(False, description="torch.compile the model first (GPU, big scenes)")
    nodata: float | list[float | None] | None = Field(
        None, description="nodata override of the scene files (default: the model file's rule)"
    )
    bands: str | list[str | int] | None = Field(
        None,
        description="bands of the scene to predict, in order: names or 1-based indexes "
        "(default: the model's bands by name, else the scene's bands as they are)",
    )
    allow_resolution_mismatch: bool = Field(
        False, description="predict a scene whose pixel size differs >1.5x from the model's"
    )
    dn_offset: float | None = Field(
        None, description="DN added to harmonise the scene (default: its product metadata)"
    )

    def predict_options(self) -> Any:
        """The :class:`geounet.inference.PredictOptions` of this section."""
        from geounet.inference import PredictOptions

        options = self.model_dump(exclude={"scene", "nodata", "bands"})
        bands = tuple(self.bands) if isinstance(self.bands, list) else self.bands
        return PredictOptions(**options, nodata=nodata_rule_from_json(self.nodata), bands=bands)


class VectorizeSection(_Model):
    """The ``vectorize`` section of a job (the options of ``geounet vectorize``)."""

    simplify_m: float = Field(0.0, ge=0, description="simplification tolerance in metres")
    min_area_m2: float = Field(0.0, ge=0, description="drop polygons smaller than this")
    classes: list[str] | None = Field(None, description="class names to keep (default: all)")
    block_size: int = Field(1024, ge=2, description="block edge in pixels (bounds memory)")


class EvaluateSection(_Model):
    """The ``evaluate`` section of a job (the options of ``geounet evaluate``)."""

    reference: Path | None = Field(
        None,
        description="reference labels (raster or polygons; polygons use the tile class map); "
        "default: the label chips of `split`",
    )
    split: Literal["train", "val", "test"] = Field(
        "test", description="split scored when no reference is given"
    )
    object_classes: list[str] | None = Field(
        None, description="classes given object metrics (default: building and field)"
    )
    iou_threshold: float = Field(0.5, gt=0, le=1, description="smallest IoU of an object match")
    min_area_m2: float = Field(0.0, ge=0, description="objects smaller than this are ignored")
    unknown_classes: Literal["error", "miss"] = Field(
        "error", description="a reference class the prediction lacks: refuse, or count as missed"
    )
    baseline: Literal["none", "random_forest"] = Field(
        "none",
        description="also score a per-pixel random forest (100 trees, raw bands) trained on "
        "the train chips, on the same pixels",
    )


class ReportSection(_Model):
    """The ``report`` section of a job: the HTML/Markdown report and the STAC item."""

    title: str | None = Field(None, description="report title (default: the job name)")
    stac: bool = Field(True, description="write item.json, a STAC Item of the outputs")
    datetime: str | None = Field(
        None, description="acquisition time of the scene for the STAC item (ISO 8601)"
    )


STAGES = ("tile", "train", "predict", "vectorize", "evaluate", "report")
"""The stages of a job, in the order they run."""

_JOB_OWNED = {("tile", "out"), ("train", "chips"), ("train", "out")}
"""Fields a job sets itself: stage folders live under the job's ``out``."""


class JobConfig(_Model):
    """A whole job: tile -> train -> predict -> vectorize -> evaluate -> report."""

    name: str = Field("job", description="job name (report title, STAC item id)")
    out: Path = Field(description="job folder; each stage writes its own subfolder")
    tile: TileConfig = Field(description="the scene, its labels and how to cut chips")
    train: TrainConfig = Field(description="model, loss, optimiser, epochs, hardware")
    predict: PredictSection = Field(
        default_factory=PredictSection, description="whole-scene prediction"
    )
    vectorize: VectorizeSection = Field(
        default_factory=VectorizeSection, description="class raster -> polygons"
    )
    evaluate: EvaluateSection = Field(
        default_factory=EvaluateSection, description="metrics against reference labels"
    )
    report: ReportSection = Field(
        default_factory=ReportSection, description="report.html and the STAC item"
    )

    def to_yaml_dict(self) -> dict[str, Any]:
        """The resolved job as plain data (absolute paths; the job-owned folders left out)."""
        data = self.model_dump(mode="json")
        for section, key in _JOB_OWNED:
            data[section].pop(key, None)
        return data


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``key`` ``a.b.c`` (creating mappings on the way)."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section.")
        node = child
    node[last] = value


def load_job_config(
    path: str | Path, *, out: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> JobConfig:
    """Build a :class:`JobConfig` from a job file plus overrides.

    Paths in the file are relative to the file's folder (``geounet:`` paths are inside the
    package); the job's ``out`` is relative to the current folder, like ``--out``. Overrides
    are dotted keys (``train.epochs``, ``train.model.options.depth``) with parsed values; their
    relative paths are relative to the current folder.

    Raises:
        ConfigError: A missing ``out``, a stage folder set by hand, unknown keys, wrong types
            or out-of-range values, with the field names and the file.
    """
    path = Path(path)
    raw = read_yaml(path, "job file")
    base = path.absolute().parent
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            data[key] = _resolve_paths(value, base)
        else:
            data[key] = value
    for key, value in (overrides or {}).items():
        if key.rpartition(".")[2] == "scenes" and isinstance(value, list):
            value = _resolve_paths({"scenes": value}, Path.cwd())["scenes"]
        elif key.rpartition(".")[2] in _PATH_FIELDS and value is not None:
            cwd = Path.cwd()
            if isinstance(value, list):
                value = [resolve_path(v, cwd) for v in value]
            else:
                value = resolve_path(value, cwd)
        _set_dotted(data, key, value)
    if out is not None:
        data["out"] = out
    if data.get("out") is None:
        raise ConfigError(f"job file {path} sets no `out:` folder; add one or give --out.")
    data["out"] = str(Path(data["out"]).absolute())
    for section, key in sorted(_JOB_OWNED):
        body = data.get(section)
        if isinstance(body, dict) and key in body:
            raise ConfigError(
                f"{path}: remove `{section}.{key}`; in a job every stage writes to its own "
                f"folder under `out` ({data['out']}/{section})."
            )
    for section in ("tile", "predict"):
        body = data.get(section)
        if isinstance(body, dict) and isinstance(body.get("scene"), str):
            body["scene"] = [body["scene"]]
    job_out = Path(data["out"])
    if isinstance(data.get("tile"), dict):
        data["tile"]["out"] = str(job_out / "tile")
    if isinstance(data.get("train"), dict):
        data["train"] = {**data["train"], "chips": str(job_out / "tile"),
                         "out": str(job_out / "train")}  # fmt: skip
    try:
        return JobConfig(**data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid job file {path}:\n" + "\n".join(lines)) from exc
