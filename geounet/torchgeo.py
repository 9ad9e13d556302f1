"""torchgeo interop: a chips folder as a torchgeo dataset, and the input scaling its weights need.

``geounet tile`` writes chips that torchgeo code can train on directly::

    from torch.utils.data import DataLoader
    from torchgeo.datasets import stack_samples
    from geounet.torchgeo import chips_dataset

    ds = chips_dataset("chips", split="train", scale="reflectance")
    loader = DataLoader(ds, batch_size=8, collate_fn=stack_samples)

Each sample is torchgeo's dict: ``image`` (float32 ``C x H x W``), ``mask`` (int64 ``H x W``,
255 = ignore), plus ``crs``, ``bounds`` and ``chip_id``. torchgeo's pretrained Sentinel-2
weights (SSL4EO, SatMAE...) expect top-of-atmosphere reflectance, the DN divided by 10000, not
z-scores: ``scale="reflectance"`` gives that; ``scale="zscore"`` gives geounet's own
``(DN - mean) / std`` of ``stats.json``. torchgeo is imported only here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geounet.radiometry import REFLECTANCE_SCALE

__all__ = ["REFLECTANCE_RECIPE", "chips_dataset"]

REFLECTANCE_RECIPE = {"scale": "reflectance"}
"""The ``train.input`` section (:class:`geounet.radiometry.InputRecipe`) that feeds a model
DN / 10000, as torchgeo's multispectral weights were trained on; the model file records it, so
prediction scales scenes the same way."""


def chips_dataset(
    chips_dir: str | Path,
    split: str = "train",
    *,
    scale: Literal["reflectance", "zscore", "none"] = "reflectance",
    transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Any:
    """A geounet chips folder as a :class:`torchgeo.datasets.NonGeoDataset`.

    Args:
        chips_dir: A folder written by ``geounet tile``.
        split: ``train``, ``val`` or ``test`` (the index's split column).
        scale: Pixel values given as ``image``: ``reflectance`` (DN / 10000, torchgeo's
            pretrained weights), ``zscore`` (geounet's normalisation from ``stats.json``) or
            ``none`` (raw DN as float32). Nodata pixels are 0 in every case.
        transforms: torchgeo-style callable on the sample dict (e.g. kornia augmentations).

    Returns:
        The dataset; ``ds.classes`` are the class names, ``ds.bands`` the band names.
    """
    import torch
    from torchgeo.datasets import NonGeoDataset

    from geounet.data import ChipDataset

    class GeounetChips(NonGeoDataset):  # type: ignore[misc]
        """geounet chips (``index.gpkg``, ``images/``, ``labels/``) as a torchgeo dataset."""

        def __init__(self) -> None:
            self.chips = ChipDataset(chips_dir, split)
            self.info = self.chips.info
            self.bands = self.info.bands
            self.classes = list(self.info.classes.names)
            self.transforms = transforms

        def __len__(self) -> int:
            return len(self.chips)

        def __getitem__(self, index: int) -> dict[str, Any]:
            from geounet.data import read_chip

            sample = self.chips[index]
            if scale != "zscore":
                _, image_rel, _ = self.chips.records[index]
                data, valid, _, _ = read_chip(self.chips.root / image_rel)
                x = data.astype(np.float32)
                if scale == "reflectance":
                    x *= np.float32(REFLECTANCE_SCALE)
                x[:, ~valid] = 0.0
                sample["image"] = torch.from_numpy(x)
            h, w = sample["mask"].shape
            t = sample["transform"]
            sample["bounds"] = (t.c, t.f + t.e * h, t.c + t.a * w, t.f)  # left, bottom, right, top
            return self.transforms(sample) if self.transforms is not None else sample

    return GeounetChips()
