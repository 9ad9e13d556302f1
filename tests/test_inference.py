from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from geounet import inference
from geounet.classes import ClassScheme
from geounet.errors import BandMismatchError, CRSError, OutputError
from geounet.inference import ModelSpec, PredictOptions, predict_scene
from geounet.sample_data import make_synthetic_scene

BANDS = ("B02", "B03", "B04", "B08")


def _spec(count=4, chip=64):
    return ModelSpec(
        bands=tuple(f"band_{i + 1}" for i in range(count)) if count != 4 else BANDS,
        mean=np.full(count, 100.0, np.float32),
        std=np.full(count, 50.0, np.float32),
        scheme=ClassScheme.default(),
        chip_size=chip,
    )


class PixelModel(torch.nn.Module):
    """Output depends only on the pixel's own bands (a 1x1 convolution)."""

    def __init__(self, cin=4, k=4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(cin, k, 1)

    def forward(self, x):
        return self.conv(x)


class ConvModel(torch.nn.Module):
    """Two 3x3 convolutions: receptive field 5x5 (half-width 2)."""

    def __init__(self, cin=4, k=4):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(cin, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, k, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _scene(tmp_path, shape=(150, 201), nodata=None):
    path = make_synthetic_scene(
        tmp_path / "scene.tif", shape=shape, count=4, fill="random", nodata=nodata
    )
    with rasterio.open(path, "r+") as ds:
        ds.descriptions = BANDS
    return path


def _whole(model, path, spec):
    with rasterio.open(path) as ds:
        x = (ds.read().astype(np.float32) - spec.mean[:, None, None]) / spec.std[:, None, None]
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(x)[None]), 1)[0].numpy()


@pytest.mark.parametrize("blend", ["gaussian", "cosine", "crop"])
@pytest.mark.parametrize(("chip", "overlap"), [(64, 16), (48, 0), (40, 13)])
def test_per_pixel_model_tiles_exactly_like_whole_scene(tmp_path, blend, chip, overlap):
    path, spec, model = _scene(tmp_path), _spec(chip=chip), PixelModel()
    result = predict_scene(
        model,
        path,
        tmp_path / "out",
        metadata=spec,
        options=PredictOptions(overlap=overlap, blend=blend, probabilities=True, batch_size=3),
    )
    whole = _whole(model, path, spec)
    with rasterio.open(result.classes) as c, rasterio.open(path) as s:
        assert c.crs == s.crs and c.transform == s.transform and c.shape == s.shape
        np.testing.assert_array_equal(c.read(1), whole.argmax(0))
    with rasterio.open(result.probabilities) as p:
        np.testing.assert_array_equal(
            p.read(), np.clip(np.rint(whole * 255), 0, 255).astype(np.uint8)
        )


def test_merging_on_a_thread_gives_the_same_files(tmp_path, monkeypatch):
    # GPUs blend batch i on a thread while the model runs batch i + 1; run that path on the CPU.
    path, spec, model = _scene(tmp_path), _spec(chip=40), ConvModel()
    options = PredictOptions(overlap=13, probabilities=True, batch_size=2)
    inline = predict_scene(model, path, tmp_path / "inline", metadata=spec, options=options)
    monkeypatch.setattr(inference, "_MERGE_THREAD_DEVICES", {"cpu", "cuda"})
    threaded = predict_scene(model, path, tmp_path / "threaded", metadata=spec, options=options)
    for a, b in (
        (inline.classes, threaded.classes),
        (inline.probabilities, threaded.probabilities),
    ):
        with rasterio.open(a) as x, rasterio.open(b) as y:
            np.testing.assert_array_equal(x.read(), y.read())


def test_conv_model_has_no_seams_with_crop(tmp_path):
    path, spec, model = _scene(tmp_path), _spec(chip=48), ConvModel()
    result = predict_scene(
        model,
        path,
        tmp_path / "out",
        metadata=spec,
        options=PredictOptions(overlap=8, blend="crop", probabilities=True),
    )
    whole = _whole(model, path, spec)
    with rasterio.open(result.probabilities) as p:
        got = p.read()
    want = np.clip(np.rint(whole * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(got[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2])


def test_conv_model_gaussian_close_to_whole(tmp_path):
    path, spec, model = _scene(tmp_path), _spec(chip=48), ConvModel()
    result = predict_scene(
        model,
        path,
        tmp_path / "out",
        metadata=spec,
        options=PredictOptions(overlap=16, blend="gaussian", probabilities=True),
    )
    whole = np.clip(np.rint(_whole(model, path, spec) * 255), 0, 255)
    with rasterio.open(result.probabilities) as p:
        got = p.read().astype(float)
    # Chip borders see zero padding instead of neighbours; Gaussian weights make them count
    # little. Stated tolerance: every probability within 8/255 of the whole-scene value, and
    # on average within 0.25/255 (random-noise input makes the softmax as touchy as it gets).
    err = np.abs(got - whole)[:, 2:-2, 2:-2]
    assert err.max() <= 8 and err.mean() <= 0.25


def test_nodata_stays_nodata_and_outputs_load(tmp_path):
    path = _scene(tmp_path, nodata=0)
    with rasterio.open(path, "r+") as ds:
        data = ds.read()
        data[:, 10:30, 20:90] = 0
        ds.write(data)
    result = predict_scene(
        PixelModel(),
        path,
        tmp_path / "out",
        metadata=_spec(chip=64),
        options=PredictOptions(overlap=16),
    )
    with rasterio.open(result.classes) as c:
        classes = c.read(1)
        assert c.nodata == 255
        assert c.colormap(1)[1][:3] == ClassScheme.default().classes[1].color
        assert c.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert (classes[10:30, 20:90] == 255).all()
    np.testing.assert_array_equal(classes == 255, (data == 0).any(axis=0))
    assert result.qml.read_text().count("paletteEntry") == 4
    assert (tmp_path / "out" / "preview.png").stat().st_size > 100
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_tta_equals_plain_for_a_flip_invariant_model(tmp_path):
    path, spec, model = _scene(tmp_path), _spec(chip=64), PixelModel()
    a = predict_scene(
        model,
        path,
        tmp_path / "a",
        metadata=spec,
        options=PredictOptions(tta=True, probabilities=True),
    )
    b = predict_scene(
        model, path, tmp_path / "b", metadata=spec, options=PredictOptions(probabilities=True)
    )
    with rasterio.open(a.probabilities) as pa, rasterio.open(b.probabilities) as pb:
        assert np.abs(pa.read().astype(int) - pb.read().astype(int)).max() <= 1


def test_bad_input_fails_before_compute(tmp_path):
    path = _scene(tmp_path)
    with pytest.raises(BandMismatchError, match=r"trained on 3 bands.*has 4 bands"):
        predict_scene(PixelModel(3), path, tmp_path / "o", metadata=_spec(count=3))
    # Bands in another order are read in the model's order (test below); a band the scene
    # lacks is still refused before any compute.
    spec = ModelSpec(
        bands=("B02", "B03", "B8A", "B04"),
        mean=np.zeros(4, np.float32),
        std=np.ones(4, np.float32),
        scheme=ClassScheme.default(),
    )
    with pytest.raises(BandMismatchError, match="order"):
        predict_scene(PixelModel(), path, tmp_path / "o", metadata=spec)
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=8, height=8, count=4, dtype="uint16") as d:
        d.write(np.ones((4, 8, 8), "uint16"))
    with pytest.raises(CRSError):
        predict_scene(PixelModel(), nocrs, tmp_path / "o", metadata=_spec())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        predict_scene(PixelModel(), path, blocker / "sub", metadata=_spec())
    assert not (tmp_path / "o").exists()


def _reordered(path, order, out):
    """A copy of the scene at ``path`` with its bands in ``order`` (0-based), names kept."""
    with rasterio.open(path) as src:
        data, profile, names = src.read(), src.profile, src.descriptions
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data[list(order)])
        dst.descriptions = tuple(names[i] for i in order)
    return out


def test_predict_reads_a_scene_s_bands_in_the_model_s_order(tmp_path, caplog):
    path = _scene(tmp_path)
    shuffled = _reordered(path, (3, 1, 0, 2), tmp_path / "shuffled.tif")  # B08 B03 B02 B04
    a = predict_scene(PixelModel(), path, tmp_path / "a", metadata=_spec())
    with caplog.at_level("INFO", logger="geounet._bands"):
        b = predict_scene(PixelModel(), shuffled, tmp_path / "b", metadata=_spec())
    assert "in the model's order ['B02', 'B03', 'B04', 'B08']" in caplog.text
    with rasterio.open(a.classes) as ca, rasterio.open(b.classes) as cb:
        classes = ca.read(1)
        assert len(np.unique(classes)) > 1  # the model tells the bands apart
        np.testing.assert_array_equal(classes, cb.read(1))


def test_predict_picks_the_model_s_bands_from_a_larger_stack(tmp_path):
    path = _scene(tmp_path)
    wide = make_synthetic_scene(tmp_path / "wide.tif", shape=(150, 201), count=6, fill="random")
    with rasterio.open(path) as src, rasterio.open(wide, "r+") as dst:
        stack = dst.read()
        stack[[5, 0, 2, 4]] = src.read()  # B02 at 6, B03 at 1, B04 at 3, B08 at 5
        dst.write(stack)
        dst.descriptions = ("B03", "B01", "B04", "B11", "B08", "B02")
    a = predict_scene(PixelModel(), path, tmp_path / "a", metadata=_spec())
    by_name = predict_scene(PixelModel(), wide, tmp_path / "b", metadata=_spec())
    by_index = predict_scene(PixelModel(), wide, tmp_path / "c", metadata=_spec(), bands="6,1,3,5")
    with rasterio.open(a.classes) as ca:
        expected = ca.read(1)
    for result in (by_name, by_index):
        with rasterio.open(result.classes) as c:
            np.testing.assert_array_equal(c.read(1), expected)
    with pytest.raises(BandMismatchError, match=r"wide.tif has no band \['B8A'\].*'B11'"):
        predict_scene(PixelModel(), wide, tmp_path / "d", metadata=_spec(), bands="B02,B8A")
    assert not (tmp_path / "d").exists()
