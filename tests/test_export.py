"""ONNX export: the graph equals the torch model on real chips, and carries Deepness metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from _models import BANDS, sample_band_paths
from click.testing import CliRunner
from rasterio.windows import Window

from geounet.cli.main import cli
from geounet.engines import read_onnx_metadata
from geounet.errors import ConfigError, ModelFileError
from geounet.export import MAX_IR_VERSION, MAX_OPSET, OnnxExportOptions, export_onnx
from geounet.grid import ChipGrid
from geounet.inference import ModelSpec, _read_chip
from geounet.modelfile import ModelMetadata, load_model_file
from geounet.raster import open_scene

TOLERANCE = 1e-5
"""Largest difference of a probability between the ONNX graph and torch (float32 rounding)."""


def _chips(info, spec, size, n):
    grid = ChipGrid.from_scene(info, size, size, "shift")
    picks = np.linspace(0, len(grid) - 1, n).astype(int)
    chips = [list(grid)[i] for i in picks]
    normalised = np.stack([_read_chip(info, spec, c)[0] for c in chips])
    raw = np.stack([_read_chip(info, spec, c, raw=True)[0] for c in chips])
    return normalised, raw


@pytest.mark.parametrize("size", [128, 100])  # the training chip, and one not a multiple of 4
def test_exported_graph_matches_torch_on_real_sample_chips(sample_model, size):
    model_path, onnx_path = sample_model
    loaded = load_model_file(model_path)
    spec = ModelSpec.from_metadata(loaded.metadata)
    info = open_scene(sample_band_paths())
    normalised, raw = _chips(info, spec, size, 3)
    with torch.no_grad():
        expected = torch.softmax(loaded.model(torch.from_numpy(normalised)), dim=1).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": raw})[0]
    assert got.shape == expected.shape == (3, 4, size, size)
    assert np.abs(got - expected).max() <= TOLERANCE
    assert (got.argmax(1) == expected.argmax(1)).mean() > 0.9999
    assert len(np.unique(expected.argmax(1))) > 1  # a model whose classes vary


def test_graph_masks_nan_pixels_as_predict_masks_nodata(sample_model):
    model_path, onnx_path = sample_model
    loaded = load_model_file(model_path)
    spec = ModelSpec.from_metadata(loaded.metadata)
    info = open_scene(sample_band_paths())
    data = info.read(Window(0, 0, 64, 64)).astype(np.float32)
    raw = data.copy()
    raw[2, :20, :] = np.nan  # one band missing is nodata for the whole pixel
    normalised = (data - spec.mean[:, None, None]) / spec.std[:, None, None]
    normalised[:, :20, :] = 0.0  # what predict's readers do with nodata for the torch engine
    with torch.no_grad():
        expected = torch.softmax(loaded.model(torch.from_numpy(normalised[None])), 1).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": raw[None]})[0]
    assert np.isfinite(got).all()
    assert np.abs(got - expected).max() <= TOLERANCE


def test_onnx_file_has_opset_17_ir_8_dynamic_axes_and_deepness_metadata(sample_model):
    model_path, onnx_path = sample_model
    proto = onnx.load(str(onnx_path))
    assert proto.ir_version <= MAX_IR_VERSION
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) <= MAX_OPSET
    onnx.checker.check_model(proto)
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1] == 4  # C static
    assert all(dims[i].dim_param for i in (0, 2, 3))  # N, H, W dynamic
    props = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert props["model_type"] == "Segmentor"
    assert props["class_names"] == {"0": "other", "1": "field", "2": "water", "3": "building"}
    assert props["resolution"] == 1000.0  # 10 m pixels in cm
    assert props["tile_size"] == props["tiles_size"] == 128
    assert props["tiles_overlap"] == 25
    assert props["seg_thresh"] == 0.5 and props["seg_small_segment"] == 0
    # Deepness feeds (x / 255 - mean) / std: with these values the graph sees the raw bands.
    x = np.array([0.0, 1.0, 1234.0, 65535.0], dtype=np.float32)
    mean = np.float32(props["standardization_mean"][0])
    std = np.float32(props["standardization_std"][0])
    np.testing.assert_allclose((np.float32(x * (1.0 / 255.0)) - mean) / std, x, rtol=1e-6)
    assert len(props["standardization_std"]) == 4
    own = props["geounet"]
    assert ModelMetadata.from_dict(own) == load_model_file(model_path).metadata
    assert own["onnx"]["normalization_in_graph"] is True
    assert read_onnx_metadata(onnx_path)["bands"] == list(BANDS)


def test_export_refuses_bad_requests_before_writing(sample_model, tmp_path):
    model_path, onnx_path = sample_model
    with pytest.raises(ConfigError, match=r"\.onnx"):
        export_onnx(model_path, tmp_path / "model.bin")
    with pytest.raises(ConfigError, match="opset"):
        OnnxExportOptions(opset=18)
    with pytest.raises(ConfigError, match="tiles_overlap"):
        OnnxExportOptions(tiles_overlap=100)
    bare = onnx.load(str(onnx_path))
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    with pytest.raises(ModelFileError, match="no geounet metadata"):
        read_onnx_metadata(tmp_path / "bare.onnx")
    assert list(tmp_path.iterdir()) == [tmp_path / "bare.onnx"]


def test_geounet_export_command_writes_a_loadable_file(sample_model, tmp_path):
    model_path, _ = sample_model
    out = tmp_path / "sub" / "m.onnx"
    run = CliRunner().invoke(
        cli, ["export", str(model_path), "--format", "onnx", "--out", str(out),
              "--tiles-overlap", "10", "--opset", "16"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    proto = onnx.load(str(out))
    assert json.loads({p.key: p.value for p in proto.metadata_props}["tiles_overlap"]) == 10
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 16
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]  # no temporary left behind
