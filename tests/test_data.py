from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from _chips import BANDS, TRANSFORM, make_chips  # (tests/ is on pythonpath)
from affine import Affine

from geounet.data import (
    Augment,
    ChipDataset,
    Normalization,
    collate_samples,
    read_chips_info,
)
from geounet.errors import BandMismatchError, ConfigError, InputFileError
from geounet.tiling import read_index


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chips(tmp_path_factory.mktemp("data"))


def test_dataset_yields_torchgeo_style_normalised_samples(chips):
    ds = ChipDataset(chips, "train")
    index = read_index(chips)
    assert 0 < len(ds) <= (index.split == "train").sum()
    sample = ds[0]
    assert set(sample) >= {"image", "mask", "crs", "transform"}
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (4, 32, 32)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (32, 32)
    assert sample["crs"].to_epsg() == 32633
    # The chip's transform is the scene transform offset by the chip's window.
    row = index.set_index("chip_id").loc[sample["chip_id"]]
    assert sample["transform"] == TRANSFORM * Affine.translation(row.col_off, row.row_off)
    stats = json.loads((chips / "stats.json").read_text())
    with rasterio.open(chips / row.image) as src:
        raw = src.read().astype(np.float32)
    expected = (raw - np.array(stats["mean"], np.float32)[:, None, None]) / np.array(
        stats["std"], np.float32
    )[:, None, None]
    np.testing.assert_allclose(sample["image"].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_nodata_pixels_are_zero_and_ignored(chips):
    index = read_index(chips)
    corner = index[(index.row_off == 64) & (index.col_off == 0)].iloc[0]
    ds = ChipDataset(chips, corner.split)
    sample = ds[[r[0] for r in ds.records].index(corner.chip_id)]
    image, mask = sample["image"].numpy(), sample["mask"].numpy()
    assert np.all(image[:, -6:, :6] == 0) and np.all(mask[-6:, :6] == 255)
    assert np.any(image[:, :-6, 6:] != 0)


def test_unlabelled_chips_are_skipped(chips):
    index = read_index(chips)
    full = index[index.px_ignore == index.height * index.width]
    for split in ("train", "val", "test"):
        ids = {r[0] for r in ChipDataset(chips, split).records}
        assert ids.isdisjoint(set(full.chip_id))


def test_augment_moves_image_and_mask_together():
    image = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8)
    mask = image[0].long()
    sample = {"image": image, "mask": mask, "crs": None, "transform": Affine.identity()}
    seen = set()
    torch.manual_seed(0)
    for _ in range(64):
        out = Augment(dihedral=True)(sample)
        assert torch.equal(out["image"][0].long(), out["mask"])
        seen.add(tuple(out["mask"].flatten()[:3].tolist()) + tuple(out["mask"][:, 0][:3].tolist()))
    assert len(seen) == 8  # all 8 flips/rotations occur
    assert torch.equal(sample["image"], image)  # input untouched


def test_augment_crop_moves_transform_and_adds_noise():
    torch.manual_seed(1)
    image = torch.zeros(3, 16, 16)
    sample = {"image": image, "mask": torch.zeros(16, 16, dtype=torch.long), "crs": None,
              "transform": TRANSFORM}  # fmt: skip
    out = Augment(dihedral=False, crop_size=8, brightness=0.5, noise=0.1)(sample)
    assert out["image"].shape == (3, 8, 8) and out["mask"].shape == (8, 8)
    col, row = ~TRANSFORM * (out["transform"].c, out["transform"].f)
    assert 0 <= row <= 8 and 0 <= col <= 8 and float(out["image"].std()) > 0
    with pytest.raises(ValueError, match="crop_size"):
        Augment(crop_size=0)


def test_collate_stacks_tensors_and_keeps_georeferencing_as_lists(chips):
    ds = ChipDataset(chips, "train")
    batch = collate_samples([ds[0], ds[1]])
    assert batch["image"].shape == (2, 4, 32, 32) and batch["mask"].shape == (2, 32, 32)
    assert isinstance(batch["crs"], list) and isinstance(batch["transform"], list)
    assert len(batch["transform"]) == 2


def test_chips_info_and_normalisation_round_trip(chips):
    info = read_chips_info(chips)
    assert info.bands == BANDS and info.chip_size == 32 and info.res == (10.0, 10.0)
    assert info.crs == "EPSG:32633"
    assert info.classes.names == ["other", "field", "water", "building"]
    norm = info.normalization
    assert Normalization.from_dict(norm.to_dict()) == norm and norm.p2 is not None
    with pytest.raises(BandMismatchError, match="3 bands"):
        norm.apply(np.zeros((3, 2, 2)))


def test_bad_inputs_are_clear_errors(tmp_path, chips):
    with pytest.raises(InputFileError, match="run `geounet tile` first"):
        ChipDataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="split must be one of"):
        ChipDataset(chips, "validation")


@pytest.mark.parametrize("jitter", [False, True])
def test_cached_chips_give_the_same_samples_without_reading_again(tmp_path, jitter):
    import shutil

    from geounet.data import Augment, read_chips_info
    from geounet.radiometry import InputRecipe, SpectralJitter

    chips = make_chips(tmp_path)
    info = read_chips_info(chips)
    recipe = InputRecipe(info.bands, info.normalization, scale=1e-4, indices=("ndvi",))
    spectral = SpectralJitter(gain=0.1) if jitter else None
    augment = Augment(dihedral=True, noise=0.05)

    def epoch(ds: ChipDataset) -> list[dict]:
        torch.manual_seed(3)
        return [ds[i] for i in range(len(ds))]

    plain = ChipDataset(chips, "train", transforms=augment, recipe=recipe, jitter=spectral)
    cached = ChipDataset(
        chips, "train", transforms=augment, recipe=recipe, jitter=spectral, cache_mb=64
    )
    expected, first = epoch(plain), epoch(cached)
    moved = tmp_path / "moved"
    shutil.move(chips / "images", moved)  # a second epoch must come from memory
    second = epoch(cached)
    for a, b, c in zip(expected, first, second, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["image"], c["image"])
        assert torch.equal(a["mask"], c["mask"]) and a["transform"] == c["transform"]
    # In-place changes by a caller do not reach the cache.
    second[0]["image"].zero_()
    assert torch.equal(epoch(cached)[0]["image"], expected[0]["image"])
    # A budget smaller than one chip caches nothing: the files are read (and now missing).
    none = ChipDataset(chips, "train", recipe=recipe, cache_mb=1e-3)
    with pytest.raises(Exception, match="images"):
        none[0]
    with pytest.raises(ConfigError, match="cache_mb"):
        ChipDataset(chips, "train", cache_mb=-1)
