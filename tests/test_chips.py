"""The chips folder type: one writer and one reader of the layout, band names stored once."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _chips import BANDS, make_chips
from _models import make_model_file

from geounet._model_spec import ModelSpec
from geounet._normalization import Normalization
from geounet.chips import METADATA_FILES, ChipsFolder
from geounet.data import read_chips_info
from geounet.errors import InputFileError, ModelFileError
from geounet.modelfile import load_model_file


def test_band_names_are_stored_once_and_read_from_one_place(tmp_path):
    root = make_chips(tmp_path)
    folder = ChipsFolder.open(root)
    assert all(folder.file(name).is_file() for name in METADATA_FILES)
    stats = json.loads((root / "stats.json").read_text())
    tiling = json.loads((root / "tiling.json").read_text())
    assert stats["bands"] == list(BANDS)
    assert "bands" not in tiling["scene"]
    assert all("bands" not in entry["scene"] for entry in tiling["scenes"])
    assert folder.bands == BANDS == read_chips_info(root).bands
    assert folder.classes.names == read_chips_info(root).classes.names
    assert folder.block_px() == tiling["options"]["split_block_chips"] * 32


def test_a_folder_of_the_older_layout_reads_the_same(tmp_path):
    root = make_chips(tmp_path)
    tiling = json.loads((root / "tiling.json").read_text())
    tiling["scene"]["bands"] = list(BANDS)  # written by earlier versions
    (root / "tiling.json").write_text(json.dumps(tiling))
    assert read_chips_info(root).bands == BANDS


def test_a_broken_folder_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(InputFileError, match="nope does not exist; run `geounet tile`"):
        ChipsFolder.open(tmp_path / "nope")
    root = make_chips(tmp_path)
    (root / "stats.json").unlink()
    with pytest.raises(InputFileError, match=r"stats.json is missing.*`geounet tile`"):
        read_chips_info(root)
    (root / "tiling.json").write_text("[1, 2]")
    with pytest.raises(InputFileError, match="tiling.json must hold a JSON object"):
        ChipsFolder.open(root).tiling  # noqa: B018


def test_predict_gets_the_model_metadata_typed_and_the_document_reads_the_same(tmp_path):
    path, _ = make_model_file(tmp_path)
    meta = load_model_file(path).metadata
    typed, parsed = ModelSpec.from_metadata(meta), ModelSpec.from_metadata(meta.to_dict())
    assert typed.bands == parsed.bands == meta.bands
    np.testing.assert_array_equal(typed.std, parsed.std)
    assert typed.scheme == parsed.scheme and typed.res == parsed.res
    with pytest.raises(ModelFileError, match="format_version"):
        ModelSpec.from_metadata({"bands": list(BANDS)})


def test_a_constant_band_is_divided_by_one_everywhere():
    norm = Normalization(mean=(10.0, 20.0), std=(2.0, 0.0))
    np.testing.assert_array_equal(norm.divisor, np.array([2.0, 1.0], np.float32))
    image = np.array([[[14.0]], [[25.0]]])
    np.testing.assert_allclose(norm.apply(image)[:, 0, 0], [2.0, 5.0])
    np.testing.assert_allclose(norm.invert(norm.apply(image)), image)
