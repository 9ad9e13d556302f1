from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from geounet.classes import ClassScheme
from geounet.data import Normalization
from geounet.errors import BandMismatchError, InputFileError, ModelFileError
from geounet.modelfile import (
    ModelMetadata,
    check_scene_bands,
    load_model_file,
    read_model_metadata,
    save_model_file,
)
from geounet.models import create_model, describe_model

BANDS = ("B02", "B03", "B04", "B08")


def _model_and_metadata(**options):
    torch.manual_seed(0)
    model = create_model("unet", in_channels=4, num_classes=4, depth=2, base_channels=4, **options)
    # Non-default BatchNorm statistics, so the round trip checks buffers too.
    with torch.no_grad():
        model.train()(torch.randn(2, 4, 16, 16))
    metadata = ModelMetadata(
        architecture=describe_model(model),
        bands=BANDS,
        normalization=Normalization((1.0, 2.0, 3.0, 4.0), (0.5, 0.5, 1.0, 2.0)),
        classes=ClassScheme.default(),
        chip_size=32,
        res=(10.0, 10.0),
        crs_hint="EPSG:32633",
        training={"epochs": 3, "val_metrics": {"miou": 0.5, "iou_field": float("nan")}},
    )
    return model, metadata


def test_round_trip_keeps_every_tensor_and_the_metadata(tmp_path):
    model, metadata = _model_and_metadata()
    path = save_model_file(tmp_path / "model.safetensors", model, metadata)
    loaded = load_model_file(path)
    assert not loaded.model.training
    expected, actual = model.state_dict(), loaded.model.state_dict()
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    # NaN becomes null (strict JSON); everything else is equal.
    assert loaded.metadata.to_dict() == metadata.to_dict()
    assert loaded.metadata.training["val_metrics"]["iou_field"] is None
    assert read_model_metadata(path).bands == BANDS
    x = torch.randn(1, 4, 16, 16)
    assert torch.equal(model.eval()(x), loaded.model(x))
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temporary file
    assert path.stat().st_mode & 0o044  # readable by others (umask), not mkstemp's 0600


def test_metadata_dict_round_trip_and_validation():
    _, metadata = _model_and_metadata()
    again = ModelMetadata.from_dict(json.loads(json.dumps(metadata.to_dict())))
    assert again.to_dict() == metadata.to_dict()
    assert again.classes == metadata.classes and again.normalization == metadata.normalization
    newer = {**metadata.to_dict(), "format_version": 99}
    with pytest.raises(ModelFileError, match="newer"):
        ModelMetadata.from_dict(newer)
    with pytest.raises(ModelFileError, match="lacks"):
        ModelMetadata.from_dict({"format_version": 1, "bands": []})
    with pytest.raises(ModelFileError, match="4 bands"):
        ModelMetadata(**{**metadata.__dict__, "bands": ("B02", "B03", "B04")})


def test_metadata_must_describe_the_model(tmp_path):
    model, metadata = _model_and_metadata()
    other = create_model("unet", in_channels=4, num_classes=4, depth=3, base_channels=4)
    with pytest.raises(ModelFileError, match="describe_model"):
        save_model_file(tmp_path / "m.safetensors", other, metadata)


def test_torch_save_files_are_refused_without_unpickling(tmp_path):
    model, _ = _model_and_metadata()
    zipped = tmp_path / "zip.pt"
    torch.save(model.state_dict(), zipped)
    with pytest.raises(ModelFileError, match="torch.save") as err:
        load_model_file(zipped)
    assert "never unpickles" in str(err.value) and "weights_only=True" in str(err.value)
    legacy = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelFileError, match="pickle"):
        load_model_file(legacy)
    plain_zip = tmp_path / "weights.zip"
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("a.txt", "hi")
    with pytest.raises(ModelFileError, match="zip"):
        read_model_metadata(plain_zip)


def test_other_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_model_file(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        load_model_file(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ModelFileError, match="without geounet metadata"):
        load_model_file(foreign)
    # Valid header, weights that do not fit the declared architecture.
    model, metadata = _model_and_metadata()
    path = save_model_file(tmp_path / "m.safetensors", model, metadata)
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    meta = json.loads(header["__metadata__"]["geounet"])
    meta["architecture"]["options"]["base_channels"] = 8
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, tmp_path / "bad.safetensors", metadata={"geounet": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model_file(tmp_path / "bad.safetensors")


def test_band_mismatch_names_both_band_lists(caplog):
    _, metadata = _model_and_metadata()
    check_scene_bands(metadata.bands, list(BANDS), "s2.tif")
    with pytest.raises(BandMismatchError) as err:
        check_scene_bands(metadata.bands, ["B02", "B03", "B04"], "s2.tif")
    msg = str(err.value)
    assert "4 bands ['B02', 'B03', 'B04', 'B08']" in msg and "3 bands ['B02', 'B03', 'B04']" in msg
    assert "s2.tif" in msg
    with pytest.raises(BandMismatchError, match="order"):
        check_scene_bands(metadata.bands, ["B08", "B04", "B03", "B02"], "s2.tif")
    check_scene_bands(metadata.bands, ["band_1", "band_2", "band_3", "band_4"], "plain.tif")
    assert "no band names" in caplog.text


def test_loaded_model_goes_to_the_requested_device(tmp_path):
    model, metadata = _model_and_metadata(batch_norm=False)
    path = save_model_file(Path(tmp_path) / "m.safetensors", model, metadata)
    loaded = load_model_file(path, device="cpu")
    assert next(loaded.model.parameters()).device.type == "cpu"
    assert loaded.metadata.in_channels == 4 and loaded.metadata.num_classes == 4


def test_a_header_length_of_128_mod_256_is_a_model_file_not_a_pickle(tmp_path):
    # The first byte of such a file is 0x80, the pickle PROTO opcode; the file is still valid.
    model, metadata = _model_and_metadata()
    for pad in range(0, 512, 8):
        meta = ModelMetadata(**{**metadata.__dict__, "training": {"pad": "x" * pad}})
        path = save_model_file(tmp_path / f"m{pad}.safetensors", model, meta)
        length = struct.unpack("<Q", path.read_bytes()[:8])[0]
        if length % 256 == 128:
            break
        path.unlink()
    else:
        pytest.fail("no padding gave a header length of 128 mod 256")
    assert path.read_bytes()[:1] == b"\x80"
    loaded = load_model_file(path)
    assert loaded.metadata.training["pad"] == "x" * pad
    x = torch.randn(1, 4, 16, 16)
    assert torch.equal(model.eval()(x), loaded.model(x))


class _Payload:
    """Unpickling this object creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_malicious_pickle_is_refused_and_its_payload_never_runs(tmp_path, protocol):
    import pickle

    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=protocol))
    with pytest.raises(ModelFileError, match="pickle"):
        load_model_file(evil)
    assert not marker.exists()


def test_truncated_and_incomplete_metadata_name_the_file(tmp_path):
    model, metadata = _model_and_metadata()
    path = save_model_file(tmp_path / "m.safetensors", model, metadata)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:100])  # the header says more bytes than the file has
    with pytest.raises(ModelFileError, match="cut.safetensors.*header length"):
        load_model_file(cut)
    from safetensors.torch import save_file

    partial = tmp_path / "partial.safetensors"
    meta = {"format_version": 1, "bands": list(BANDS)}
    save_file({"w": torch.zeros(2)}, partial, metadata={"geounet": json.dumps(meta)})
    with pytest.raises(ModelFileError, match=r"partial\.safetensors: model metadata lacks"):
        read_model_metadata(partial)
