"""The per-pixel random forest baseline: the yardstick every segmentation model is held to.

A ``sklearn.ensemble.RandomForestClassifier`` is trained on the raw band values of labelled
pixels of the *train* chips (a seeded uniform subsample of at most ``max_pixels``; label 255,
i.e. unlabelled and nodata pixels, left out) and predicts either

* every valid pixel of a scene into a class raster on the scene's grid (:func:`predict_scene`),
  which :func:`geounet.evaluate.evaluate_prediction` scores exactly like the U-Net's
  ``classes.tif`` against the same reference, or
* the pixels of label chips (:func:`predict_chips`), for cross-validation folds.

Raw values, not normalised ones: a tree splits on thresholds, so any per-band affine
normalisation gives the same forest. The forest sees one pixel at a time (no context), which is
exactly what the U-Net has to beat.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.windows import Window

from geounet._files import staged_file
from geounet.chips import ChipsFolder
from geounet.classes import SCHEME_TAG, ClassScheme
from geounet.errors import BandMismatchError, ConfigError, LabelError
from geounet.raster import (
    GDAL_ENV,
    NodataOverride,
    open_block_writer,
    open_scene,
    read_band,
    read_raster_valid,
)

log = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "BaselineName",
    "ForestBaseline",
    "ForestOptions",
    "check_baseline",
    "evaluate_forest",
    "labelled_pixels",
    "predict_chips",
    "predict_scene",
    "train_forest",
]

BaselineName = Literal["none", "random_forest"]
BASELINES: tuple[str, ...] = ("none", "random_forest")
"""Baselines ``evaluate`` can score beside the model."""

_ROWS_PER_BLOCK = 256  # rows read and predicted at once: memory ~ width x 256 x bands


@dataclass(frozen=True)
class ForestOptions:
    """How the forest is trained.

    Attributes:
        trees: Number of trees (``n_estimators``).
        max_pixels: At most this many labelled train pixels, drawn uniformly with ``seed``.
        seed: Seed of the pixel subsample and of the forest.
        n_jobs: Parallel jobs of scikit-learn (``None``: one per CPU).
    """

    trees: int = 100
    max_pixels: int = 200_000
    seed: int = 0
    n_jobs: int | None = None

    def __post_init__(self) -> None:
        if self.trees < 1 or self.max_pixels < 1:
            raise ConfigError(
                f"trees and max_pixels must be >= 1, got {self.trees} and {self.max_pixels}."
            )


@dataclass(frozen=True)
class ForestBaseline:
    """A trained forest and what it was trained on.

    Attributes:
        forest: The fitted ``RandomForestClassifier``.
        bands: Band names of the chips, in order (the forest's features).
        scheme: The class scheme of the chips.
        train_pixels: Labelled pixels the forest was fitted on (after the subsample).
        available_pixels: Labelled pixels of the train chips before the subsample.
        options: The training options.
        seconds: Wall time of reading the pixels and fitting.
    """

    forest: Any
    bands: tuple[str, ...]
    scheme: ClassScheme
    train_pixels: int
    available_pixels: int
    options: ForestOptions
    seconds: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (stored beside the forest's metrics)."""
        return {
            "name": "random_forest",
            **asdict(self.options),
            "features": "raw band values",
            "bands": list(self.bands),
            "train_pixels": self.train_pixels,
            "available_pixels": self.available_pixels,
            "fit_seconds": round(self.seconds, 1),
        }


def check_baseline(name: str) -> BaselineName:
    """Return ``name`` if it is a known baseline, else raise with the valid names.

    Raises:
        ConfigError: An unknown name.
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}.")
    return name  # type: ignore[return-value]


def _chips_meta(chips_dir: Path) -> tuple[tuple[str, ...], ClassScheme]:
    from geounet.data import read_chips_info

    info = read_chips_info(chips_dir)
    return tuple(info.bands), info.classes


def _chip_records(chips_dir: Path, split: str | None, chip_ids: Sequence[str] | None) -> Any:
    index = ChipsFolder(Path(chips_dir)).index()
    if "label" not in index:
        raise LabelError(f"chips folder {chips_dir} has no labels; tile with --labels.")
    if chip_ids is not None:
        return index[index["chip_id"].isin(set(chip_ids))].sort_values("chip_id")
    return index[index["split"] == split].sort_values("chip_id")


def labelled_pixels(
    chips_dir: str | Path,
    *,
    split: str | None = "train",
    chip_ids: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw band values and labels of every labelled pixel of some chips.

    Args:
        chips_dir: A chips folder with labels.
        split: The split whose chips to read (ignored when ``chip_ids`` is given).
        chip_ids: Exactly these chips instead of a split.

    Returns:
        ``(n, bands)`` values in the chips' dtype and ``(n,)`` uint8 class ids, in chip-id
        then row-major pixel order. Label 255 (unlabelled, and every nodata pixel: tiling
        writes 255 there) is left out.

    Raises:
        LabelError: The chips folder has no labels.
    """
    root = Path(chips_dir)
    _, scheme = _chips_meta(root)
    xs, ys = [], []
    with rasterio.Env(**GDAL_ENV):
        for rec in _chip_records(root, split, chip_ids).itertuples():
            image, _, _, _ = read_raster_valid(root / rec.image)
            label = read_band(root / rec.label)
            keep = label != scheme.ignore_index
            xs.append(image[:, keep].T)
            ys.append(label[keep])
    if not xs:
        return np.zeros((0, len(_chips_meta(root)[0]))), np.zeros(0, np.uint8)
    return np.concatenate(xs), np.concatenate(ys)


def train_forest(
    chips_dir: str | Path,
    *,
    split: str = "train",
    chip_ids: Sequence[str] | None = None,
    options: ForestOptions | None = None,
) -> ForestBaseline:
    """Fit the random forest on labelled pixels of the train chips (or of given chips).

    Args:
        chips_dir: A chips folder with labels.
        split: The split to train on (ignored when ``chip_ids`` is given).
        chip_ids: Train on exactly these chips (a cross-validation fold's train chips).
        options: Trees, pixel budget, seed, parallel jobs.

    Returns:
        The fitted forest with its bands, class scheme and pixel counts.

    Raises:
        LabelError: The chips hold no labelled pixel.
    """
    from sklearn.ensemble import RandomForestClassifier

    options = options or ForestOptions()
    root = Path(chips_dir)
    bands, scheme = _chips_meta(root)
    start = time.perf_counter()
    x, y = labelled_pixels(root, split=split, chip_ids=chip_ids)
    available = len(y)
    if available == 0:
        where = f"{len(chip_ids)} given chips" if chip_ids is not None else f"{split!r} split"
        raise LabelError(
            f"the {where} of {root} hold no labelled pixel; the random forest has nothing to "
            "learn from (re-tile with other split fractions, or check the labels)."
        )
    if available > options.max_pixels:
        rng = np.random.default_rng(options.seed)
        pick = np.sort(rng.choice(available, size=options.max_pixels, replace=False))
        x, y = x[pick], y[pick]
    forest = RandomForestClassifier(
        n_estimators=options.trees, n_jobs=options.n_jobs, random_state=options.seed
    ).fit(x, y)
    seconds = time.perf_counter() - start
    log.info(
        "random forest: %d trees on %d of %d labelled pixels in %.1f s",
        options.trees, len(y), available, seconds,
    )  # fmt: skip
    return ForestBaseline(forest, bands, scheme, len(y), available, options, seconds)


def _predict_pixels(baseline: ForestBaseline, values: np.ndarray) -> np.ndarray:
    """Class ids of ``(n, bands)`` raw values (empty in, empty out)."""
    if len(values) == 0:
        return np.zeros(0, np.uint8)
    return np.asarray(baseline.forest.predict(values), dtype=np.uint8)


def predict_chips(
    baseline: ForestBaseline, chips_dir: str | Path, chip_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Predict the labelled pixels of some chips.

    Args:
        baseline: A fitted forest (:func:`train_forest`).
        chips_dir: The chips folder.
        chip_ids: The chips to predict.

    Returns:
        ``(predicted, reference)``: uint8 class ids of the same labelled pixels, in the order
        of :func:`labelled_pixels`.
    """
    x, y = labelled_pixels(chips_dir, split=None, chip_ids=chip_ids)
    return _predict_pixels(baseline, x), y


def predict_scene(
    baseline: ForestBaseline,
    scene: str | Path | Sequence[str | Path],
    out_path: str | Path,
    *,
    nodata: NodataOverride = None,
) -> Path:
    """Predict every valid pixel of a scene into a class raster on the scene's grid.

    The scene is read in strips of full-width rows, so memory stays bounded by one strip.

    Args:
        baseline: A fitted forest (:func:`train_forest`).
        scene: One multi-band raster or single-band files, with the forest's bands in order.
        out_path: The GeoTIFF to write: uint8, the scene's CRS and transform exactly, 255 where
            the scene has no data, the class palette and the scheme in its ``GEOUNET_CLASSES``
            tag (what :func:`geounet.evaluate.evaluate_prediction` reads); written under a
            temporary name and renamed.
        nodata: Nodata override of the scene files (the tiling's, so the same pixels count).

    Returns:
        ``out_path``.

    Raises:
        BandMismatchError: The scene has another number of bands than the forest.
    """
    info = open_scene(scene, nodata=nodata)
    if info.count != len(baseline.bands):
        raise BandMismatchError(
            f"scene {info.name} has {info.count} bands {list(info.bands)}, the random forest "
            f"was trained on {len(baseline.bands)} {list(baseline.bands)}; give the scene the "
            "chips were cut from."
        )
    out = Path(out_path)
    scheme, ignore = baseline.scheme, np.uint8(baseline.scheme.ignore_index)
    height, width = info.shape
    with staged_file(out) as tmp, rasterio.Env(**GDAL_ENV):
        writer = open_block_writer(
            tmp, like=info, count=1, dtype="uint8", nodata=int(ignore),
            colormap=scheme.colormap(),
        )  # fmt: skip
        try:
            for row in range(0, height, _ROWS_PER_BLOCK):
                window = Window(0, row, width, min(_ROWS_PER_BLOCK, height - row))
                data, valid = info.read_valid(window)
                classes = np.full(valid.shape, ignore, np.uint8)
                classes[valid] = _predict_pixels(baseline, data[:, valid].T)
                writer.write(classes, 1, window=window)
            writer.update_tags(**{SCHEME_TAG: json.dumps(scheme.to_dict())})
        finally:
            writer.close()
    return out


def evaluate_forest(
    chips_dir: str | Path,
    scene: str | Path | Sequence[str | Path],
    reference: str | Path,
    out_path: str | Path,
    *,
    forest: ForestBaseline | None = None,
    nodata: NodataOverride = None,
    **evaluate_options: Any,
) -> dict[str, Any]:
    """Train the forest on the train chips, predict the scene and score it like the model.

    Args:
        chips_dir: The chips folder the model was trained on; its *train* split trains the
            forest (default :class:`ForestOptions`).
        scene: The scene the model predicted.
        reference: The reference the model's prediction is scored against.
        out_path: Where the forest's class raster goes (:func:`predict_scene`).
        forest: A forest already trained on ``chips_dir`` (:func:`train_forest`), e.g. one
            for the several scenes of a job; ``None`` trains it here.
        nodata: Nodata override of the scene files; ``None``: the rule the chips were tiled
            with, so the same pixels count as data.
        **evaluate_options: The options of the model's evaluation
            (:func:`geounet.evaluate.evaluate_prediction`), so both are scored alike.

    Returns:
        The forest's metrics (as :func:`geounet.evaluate.evaluate_prediction` returns them),
        with its settings and pixel counts under ``baseline``.
    """
    from geounet.data import read_chips_info
    from geounet.evaluate import evaluate_prediction

    if nodata is None:
        nodata = read_chips_info(chips_dir).nodata
    if forest is None:
        forest = train_forest(chips_dir, split="train")
    classes = predict_scene(forest, scene, out_path, nodata=nodata)
    metrics = evaluate_prediction(classes, reference, **evaluate_options)
    return {**metrics, "baseline": {**forest.summary(), "classes": str(classes)}}
