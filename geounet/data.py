"""Torch datasets over a chips folder, normalisation and augmentation.

A chips folder is what :func:`geounet.tiling.tile_scene` writes (``images/``, ``labels/``,
``index.gpkg``, ``stats.json``, ``classes.json``, ``tiling.json``). :class:`ChipDataset` serves
one split of it as torchgeo-style sample dicts::

    {"image": float32 C x H x W (normalised), "mask": int64 H x W (255 = ignore),
     "crs": rasterio CRS, "transform": Affine of the chip window}

Normalisation is per band, ``(x - mean) / std`` in float32, with the mean and standard deviation
of ``stats.json`` (computed by tiling over the scene's valid pixels). Pixels the chip GeoTIFF flags
as nodata (a nodata value, NaN or its GDAL mask) become 0 after normalisation, the band mean, and
their label is 255, so they count in neither loss nor metrics. Tiling already wrote 255 there;
the dataset re-applies it so a hand-made chips folder cannot leak nodata into training.

Batches are built with :func:`collate_samples`, which stacks tensors and keeps ``crs`` and
``transform`` as lists, as torchgeo's ``stack_samples`` does (without importing torchgeo, which
costs about a second and 0.9 GB).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import torch
from affine import Affine
from torch.utils.data import Dataset

from geounet._nodata import nodata_rule_from_json
from geounet.classes import ClassScheme
from geounet.errors import BandMismatchError, ConfigError, InputFileError
from geounet.raster import read_raster_valid

if TYPE_CHECKING:
    from geounet.radiometry import InputRecipe, SpectralJitter

Sample = dict[str, Any]
"""A sample dict: ``image``, ``mask``, ``crs``, ``transform`` (and ``chip_id``)."""

CHIP_SPLITS = ("train", "val", "test", "buffer")


@dataclass(frozen=True)
class Normalization:
    """Per-band normalisation ``(x - mean) / std``.

    Attributes:
        mean: Mean per band, in band order.
        std: Standard deviation per band; a band with ``std == 0`` (constant) is divided by 1.
        p2: Optional 2nd percentile per band (for display stretches), or ``None``.
        p98: Optional 98th percentile per band, or ``None``.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    p2: tuple[float, ...] | None = None
    p98: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.mean)
        lengths = {len(self.std)} | {len(p) for p in (self.p2, self.p98) if p is not None}
        if n == 0 or lengths != {n}:
            raise ConfigError(
                f"normalisation needs one mean and std per band, got {n} means and lengths "
                f"{sorted(lengths)}."
            )
        if any(not math.isfinite(v) for v in (*self.mean, *self.std)) or min(self.std) < 0:
            raise ConfigError("normalisation mean/std must be finite and std >= 0.")

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.mean)

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> Normalization:
        """Build from the content of a ``stats.json`` (keys ``mean``, ``std``, ``per_band``)."""
        try:
            mean = tuple(float(v) for v in stats["mean"])
            std = tuple(float(v) for v in stats["std"])
        except (KeyError, TypeError) as exc:
            raise InputFileError(f"stats lack per-band 'mean'/'std' lists: {exc}") from exc
        per_band = stats.get("per_band") or {}
        bands = stats.get("bands") or []
        try:
            p2 = tuple(float(per_band[b]["percentiles"]["p2"]) for b in bands)
            p98 = tuple(float(per_band[b]["percentiles"]["p98"]) for b in bands)
        except (KeyError, TypeError):
            p2 = p98 = None
        if len(bands) != len(mean) or not p2:
            p2 = p98 = None
        return cls(mean, std, p2, p98)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the model file's ``normalization``)."""
        out: dict[str, Any] = {"mean": list(self.mean), "std": list(self.std)}
        if self.p2 is not None and self.p98 is not None:
            out["p2"], out["p98"] = list(self.p2), list(self.p98)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        p2, p98 = data.get("p2"), data.get("p98")
        return cls(
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["std"]),
            tuple(float(v) for v in p2) if p2 is not None else None,
            tuple(float(v) for v in p98) if p98 is not None else None,
        )

    def apply(self, image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Normalise a ``(bands, H, W)`` array of any dtype to float32.

        Args:
            image: Raw pixel values, band order as in ``stats.json``.
            valid: Optional ``(H, W)`` bool mask; pixels where it is False become 0.

        Returns:
            A float32 array of the same shape.

        Raises:
            BandMismatchError: If the band count differs from the statistics'.
        """
        if image.shape[0] != self.count:
            raise BandMismatchError(
                f"image has {image.shape[0]} bands but the normalisation statistics have "
                f"{self.count}; use the statistics of the chips folder the image came from."
            )
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        # A constant band (std 0) would divide by zero; it carries no information anyway.
        std = np.where(std > 0, std, np.float32(1.0))
        out = (image.astype(np.float32) - mean) / std
        if valid is not None:
            out[:, ~valid] = 0.0
        return out

    def invert(self, image: np.ndarray) -> np.ndarray:
        """Undo :meth:`apply` (nodata pixels come back as the band mean)."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return image * np.where(std > 0, std, np.float32(1.0)) + mean


@dataclass(frozen=True)
class ChipsInfo:
    """What a chips folder says about itself (from its JSON files).

    Attributes:
        path: The chips folder.
        bands: Band names in order.
        normalization: Statistics of ``stats.json``.
        classes: The class scheme of ``classes.json``.
        chip_size: Chip side in pixels (``tiling.json`` options).
        res: Pixel size ``(x, y)`` in CRS units.
        crs: The scene CRS as ``EPSG:n`` when it has a code, else WKT (informational).
        nodata: The nodata override the scene was tiled with (``tiling.json`` options).
        display_bands: The bands drawn as red, green, blue (``tiling.json``); ``None`` for
            folders tiled before it was recorded (then recognised from the band names).
    """

    path: Path
    bands: tuple[str, ...]
    normalization: Normalization
    classes: ClassScheme
    chip_size: int
    res: tuple[float, float]
    crs: str | None
    nodata: float | tuple[float | None, ...] | None = None
    display_bands: tuple[str, ...] | None = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(
            f"{path} is missing; is {path.parent} a chips folder written by `geounet tile`?"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputFileError(f"{path} must hold a JSON object.")
    return data


def read_chips_info(chips_dir: str | Path) -> ChipsInfo:
    """Read ``stats.json``, ``classes.json`` and ``tiling.json`` of a chips folder.

    Raises:
        InputFileError: If the folder or one of the files is missing or unreadable.
    """
    root = Path(chips_dir)
    if not root.is_dir():
        raise InputFileError(f"chips folder {root} does not exist; run `geounet tile` first.")
    stats = _read_json(root / "stats.json")
    tiling = _read_json(root / "tiling.json")
    classes = ClassScheme.from_dict(_read_json(root / "classes.json"))
    bands = tuple(str(b) for b in stats.get("bands", []))
    scene = tiling.get("scene") or {}
    epsg = scene.get("epsg")
    res = tiling.get("res") or [float("nan"), float("nan")]
    return ChipsInfo(
        path=root,
        bands=bands,
        normalization=Normalization.from_stats(stats),
        classes=classes,
        chip_size=int((tiling.get("options") or {}).get("chip_size", 0)),
        res=(float(res[0]), float(res[1])),
        crs=f"EPSG:{epsg}" if epsg else scene.get("crs"),
        nodata=nodata_rule_from_json((tiling.get("options") or {}).get("nodata")),
        display_bands=tuple(tiling["display_bands"]) if tiling.get("display_bands") else None,
    )


def read_chip(path: str | Path) -> tuple[np.ndarray, np.ndarray, Any, Affine]:
    """Read a chip GeoTIFF: ``(data, valid, crs, transform)``.

    ``valid`` is ``(H, W)`` bool, False where any band equals its nodata value, is NaN or is
    masked by the chip's GDAL mask (see :func:`geounet.raster.read_raster_valid`).
    """
    return read_raster_valid(path)


class ChipDataset(Dataset[Sample]):
    """The chips of one split of a chips folder, as normalised torchgeo-style samples.

    Files are opened in ``__getitem__`` (nothing stays open), so the dataset works with
    ``DataLoader(num_workers>0)``. Chips whose label holds no class pixel (all 255) are left
    out: they would contribute nothing to loss or metrics.

    Args:
        chips_dir: A folder written by :func:`geounet.tiling.tile_scene` with labels.
        split: ``train``, ``val``, ``test`` or ``buffer``.
        transforms: Called on each sample dict after normalisation (e.g. :class:`Augment`).
        stats: Normalisation; default the folder's ``stats.json``.
        recipe: Input recipe (offset, scale, index channels, see :mod:`geounet.radiometry`);
            when given it replaces ``stats``.
        jitter: Random spectral gain/offset applied before normalising (training only; needs
            ``recipe``).
        cache_mb: Keep chips in memory after their first read, up to this many MiB (0: read
            every time). Without jitter the prepared input is kept, else the raw chip (the
            jitter is drawn anew each time); augmentation always runs afresh, so a cached
            sample equals a read one. Reading and preparing a 13-band chip cost about a third
            of a small model's training epoch on a CPU.

    Raises:
        InputFileError: If the folder is not a chips folder or has no label chips.
        ValueError: If ``split`` is not one of the names above.
    """

    def __init__(
        self,
        chips_dir: str | Path,
        split: str = "train",
        *,
        transforms: Callable[[Sample], Sample] | None = None,
        stats: Normalization | None = None,
        recipe: InputRecipe | None = None,
        jitter: SpectralJitter | None = None,
        cache_mb: float = 0.0,
    ) -> None:
        if split not in CHIP_SPLITS:
            raise ValueError(f"split must be one of {CHIP_SPLITS}, got {split!r}.")
        self.root = Path(chips_dir)
        self.info = read_chips_info(self.root)
        self.split = split
        self.transforms = transforms
        self.stats = stats or self.info.normalization
        self.recipe, self.jitter = recipe, jitter
        self.records = _split_records(self.root, split)
        if cache_mb < 0:
            raise ConfigError(f"cache_mb must be >= 0, got {cache_mb}.")
        self._cache_left = int(cache_mb * 2**20)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray, Any, Any]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        """Read, normalise and transform chip ``index``.

        Returns:
            ``image`` float32 ``C x H x W``, ``mask`` int64 ``H x W`` (255 = ignore), ``crs``,
            ``transform`` (the chip window's) and ``chip_id``.
        """
        chip_id = self.records[index][0]
        entry = self._cache.get(index) or self._read(index)
        data, valid, mask, crs, transform = entry
        image = data if valid is None else self._prepare(data, valid)
        if index in self._cache:
            # Copies, so that an in-place change by a transform cannot reach the cache.
            image = image.copy() if valid is None else image
            mask = mask.copy()
        sample: Sample = {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(mask),
            "crs": crs,
            "transform": transform,
            "chip_id": chip_id,
        }
        return self.transforms(sample) if self.transforms is not None else sample

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, Any, Any]:
        """Read chip ``index``: ``(input or raw data, valid or None, mask, crs, transform)``.

        The prepared input (``valid`` None) when nothing random happens before normalising,
        else the raw data and its mask; kept in the cache while its budget lasts.
        """
        _, image_rel, label_rel = self.records[index]
        data, valid, crs, transform = read_chip(self.root / image_rel)
        with rasterio.open(self.root / label_rel) as src:
            mask = src.read(1).astype(np.int64)
        mask[~valid] = self.info.classes.ignore_index
        jittered = self.jitter is not None and self.jitter.enabled and self.recipe is not None
        entry = (
            (data, valid, mask, crs, transform)
            if jittered
            else (self._prepare(data, valid), None, mask, crs, transform)
        )
        size = sum(a.nbytes for a in entry[:3] if a is not None)
        if size <= self._cache_left:
            self._cache[index] = entry
            self._cache_left -= size
        return entry

    def _prepare(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The model input of a raw chip: the recipe's when given, else plain normalisation."""
        if self.recipe is None:
            return self.stats.apply(data, valid)
        return self.recipe.apply(data, valid, jitter=self.jitter)


def _split_records(root: Path, split: str) -> list[tuple[str, str, str]]:
    """``(chip_id, image, label)`` of the split's chips that hold a labelled pixel."""
    from geounet.tiling import read_index

    try:
        index = read_index(root)
    except Exception as exc:  # pyogrio/fiona raise their own types for a missing layer
        raise InputFileError(f"cannot read the chip index {root / 'index.gpkg'}: {exc}") from exc
    if "label" not in index.columns:
        raise InputFileError(f"{root} holds image chips only; tile with --labels to train on it.")
    rows = index[index["split"] == split]
    if "px_ignore" in rows.columns:
        labelled = rows["px_ignore"] < rows["height"] * rows["width"]
        rows = rows[labelled]
    rows = rows.sort_values("chip_id")
    return [
        (str(r.chip_id), str(r.image), str(r.label))
        for r in rows[["chip_id", "image", "label"]].itertuples(index=False)
    ]


@dataclass(frozen=True)
class Augment:
    """Random training augmentation, applied identically to ``image`` and ``mask``.

    Random numbers come from torch's global generator, which Lightning's
    ``seed_everything(seed, workers=True)`` seeds in the main process and in every DataLoader
    worker, so a seeded run draws the same augmentations.

    Attributes:
        dihedral: Apply one of the 8 flips/rotations (the dihedral group D4) uniformly.
        crop_size: Random square crop of this side (pixels); ``None`` keeps the whole chip.
            The sample's ``transform`` is moved to the crop window.
        brightness: Add one random offset in ``[-brightness, brightness]`` to all bands (in
            units of each band's standard deviation, as the image is normalised); 0 disables.
        noise: Standard deviation of Gaussian noise added per pixel and band (same units).

    After a flip or rotation the ``transform`` no longer describes the pixels: augmented
    samples are for training only.
    """

    dihedral: bool = True
    crop_size: int | None = None
    brightness: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.crop_size is not None and self.crop_size < 1:
            raise ValueError(f"crop_size must be >= 1 or None, got {self.crop_size}.")
        if self.brightness < 0 or self.noise < 0:
            raise ValueError(
                f"brightness and noise must be >= 0, got {self.brightness} and {self.noise}."
            )

    def __call__(self, sample: Sample) -> Sample:
        """Return an augmented copy of ``sample`` (the input is not modified)."""
        image, mask = sample["image"], sample["mask"]
        out = dict(sample)
        if self.crop_size is not None and min(image.shape[-2:]) > self.crop_size:
            size = self.crop_size
            row = int(torch.randint(0, image.shape[-2] - size + 1, ()).item())
            col = int(torch.randint(0, image.shape[-1] - size + 1, ()).item())
            image = image[:, row : row + size, col : col + size]
            mask = mask[row : row + size, col : col + size]
            out["transform"] = sample["transform"] * Affine.translation(col, row)
        if self.dihedral:
            k = int(torch.randint(0, 8, ()).item())
            if k >= 4:
                image, mask = image.flip(-1), mask.flip(-1)
            image = torch.rot90(image, k % 4, dims=(-2, -1))
            mask = torch.rot90(mask, k % 4, dims=(-2, -1))
        if self.brightness > 0:
            image = image + (torch.rand(()) * 2 - 1) * self.brightness
        if self.noise > 0:
            image = image + torch.randn(image.shape) * self.noise
        out["image"], out["mask"] = image.contiguous(), mask.contiguous()
        return out


def collate_samples(samples: Sequence[Sample]) -> Sample:
    """Stack a list of sample dicts into a batch.

    Tensors are stacked along a new first dimension (``image`` ``B x C x H x W``, ``mask``
    ``B x H x W``); everything else (``crs``, ``transform``, ``chip_id``) becomes a list, as
    torchgeo's ``stack_samples`` does.

    Raises:
        ValueError: If ``samples`` is empty.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples.")
    batch: Sample = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
