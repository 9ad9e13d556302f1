"""A chips folder read as a torchgeo dataset: torchgeo's sample dicts, collate and scaling."""

from __future__ import annotations

import numpy as np
import torch
from _chips import make_chips
from torch.utils.data import DataLoader

from geounet.data import ChipDataset, read_chip
from geounet.torchgeo import chips_dataset


def test_chips_are_a_torchgeo_dataset_with_reflectance_or_zscore_images(tmp_path):
    from torchgeo.datasets import NonGeoDataset, stack_samples

    chips = make_chips(tmp_path)
    ds = chips_dataset(chips, "train")
    assert isinstance(ds, NonGeoDataset) and len(ds) == len(ChipDataset(chips, "train")) > 0
    assert ds.classes == ["other", "field", "water", "building"] and len(ds.bands) == 4
    sample = ds[0]
    data, valid, crs, transform = read_chip(chips / ChipDataset(chips, "train").records[0][1])
    want = np.where(valid, data.astype(np.float32) * 1e-4, 0)
    np.testing.assert_allclose(sample["image"].numpy(), want, rtol=1e-6)
    assert sample["mask"].dtype == torch.int64 and sample["crs"] == crs
    left, bottom, right, top = sample["bounds"]
    assert (left, top) == (transform.c, transform.f) and right > left and top > bottom
    zscore = chips_dataset(chips, "train", scale="zscore")[0]["image"]
    torch.testing.assert_close(zscore, ChipDataset(chips, "train")[0]["image"])
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=stack_samples)))
    assert batch["image"].shape[:2] == (2, 4) and batch["mask"].shape[0] == 2
