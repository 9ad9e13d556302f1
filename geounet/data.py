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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from affine import Affine
from torch.utils.data import Dataset

from geounet._nodata import nodata_rule_from_json
from geounet._normalization import Normalization
from geounet.chips import ChipsFolder
from geounet.classes import ClassScheme
from geounet.errors import ConfigError, InputFileError
from geounet.raster import read_band, read_raster_valid

if TYPE_CHECKING:
    from geounet.radiometry import InputRecipe, SpectralJitter

Sample = dict[str, Any]
"""A sample dict: ``image``, ``mask``, ``crs``, ``transform`` (and ``chip_id``)."""

CHIP_SPLITS = ("train", "val", "test", "buffer")


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


def read_chips_info(chips_dir: str | Path) -> ChipsInfo:
    """Read ``stats.json``, ``classes.json`` and ``tiling.json`` of a chips folder.

    Raises:
        InputFileError: If the folder or one of the files is missing or unreadable.
    """
    folder = ChipsFolder.open(chips_dir)
    tiling = folder.tiling
    scene = folder.scene
    epsg = scene.get("epsg")
    res = tiling.get("res") or [float("nan"), float("nan")]
    return ChipsInfo(
        path=folder.path,
        bands=folder.bands,
        normalization=Normalization.from_stats(folder.stats),
        classes=folder.classes,
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
        mask = read_band(self.root / label_rel).astype(np.int64)
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
    try:
        index = ChipsFolder(Path(root)).index()
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
