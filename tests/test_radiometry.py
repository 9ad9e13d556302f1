"""The input recipe: offset harmonisation, reflectance scaling, index channels, jitter."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from _chips import make_chips  # noqa: E402  (tests/ is on pythonpath)
from rasterio.windows import from_bounds

from geounet.config import TrainConfig
from geounet.data import ChipDataset, Normalization, read_chips_info
from geounet.errors import BandMismatchError, ConfigError, InputFileError
from geounet.inference import ModelSpec, _read_chip, predict_scene
from geounet.modelfile import ModelMetadata, load_model_file, read_model_metadata
from geounet.radiometry import (
    REFLECTANCE_SCALE,
    InputRecipe,
    SpectralJitter,
    read_product_offset,
    scene_normalization,
)
from geounet.raster import open_scene
from geounet.tiling import read_index
from geounet.training import OptimizerOptions, TrainingOptions, fit

BANDS = ("B02", "B03", "B04", "B08")
NORM = Normalization((1000.0, 1100.0, 900.0, 2500.0), (200.0, 250.0, 300.0, 600.0))


def _dn(seed: int = 0, shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 9000, (4, *shape)).astype(np.uint16)


def test_default_recipe_is_the_plain_normalisation_of_older_models():
    data = _dn()
    recipe = InputRecipe(BANDS, NORM)
    assert recipe.is_default and recipe.in_channels == 4
    np.testing.assert_array_equal(recipe.apply(data), NORM.apply(data))


def test_offset_harmonisation_is_exact():
    """A baseline-04.00 scene (+1000 DN) harmonised by -1000 gives bit-identical inputs."""
    data = _dn()
    shifted = data + np.uint16(1000)
    valid = np.ones(data.shape[1:], bool)
    valid[:2, :3] = False
    recipe = InputRecipe(BANDS, NORM, scale=REFLECTANCE_SCALE, indices=("ndvi", "ndwi"))
    old = recipe.apply(data, valid)
    new = recipe.apply(shifted, valid, offset=-1000.0)
    np.testing.assert_array_equal(old, new)
    assert not np.array_equal(old, recipe.apply(shifted, valid))  # unharmonised: different
    # Reflectance scaling keeps the training scene's inputs: (DN - mean) / std.
    np.testing.assert_allclose(old[:4], NORM.apply(data, valid), atol=1e-4)


def test_a_training_scene_of_baseline_04_is_harmonised_to_the_same_inputs():
    data = _dn()
    # Tiling statistics of the +1000 scene are 1000 higher; the recipe's offset removes it.
    norm_new = Normalization(tuple(m + 1000 for m in NORM.mean), NORM.std)
    new = InputRecipe(BANDS, norm_new, scale=REFLECTANCE_SCALE, offset=-1000.0, indices=("ndvi",))
    old = InputRecipe(BANDS, NORM, scale=REFLECTANCE_SCALE, indices=("ndvi",))
    np.testing.assert_allclose(new.apply(data + np.uint16(1000)), old.apply(data), atol=1e-5)
    np.testing.assert_array_equal(new.apply(data + np.uint16(1000))[4], old.apply(data)[4])


def test_index_channels_follow_their_formulas_on_reflectance():
    data = _dn()
    valid = np.ones(data.shape[1:], bool)
    valid[0, 0] = False
    recipe = InputRecipe(BANDS, NORM, scale=REFLECTANCE_SCALE, indices=("ndvi", "ndwi"))
    out = recipe.apply(data, valid)
    assert out.shape == (6, 16, 16) and out.dtype == np.float32
    refl = data.astype(np.float64) * 1e-4
    green, red, nir = refl[1], refl[2], refl[3]
    np.testing.assert_allclose(out[4][valid], ((nir - red) / (nir + red))[valid], atol=1e-6)
    np.testing.assert_allclose(out[5][valid], ((green - nir) / (green + nir))[valid], atol=1e-6)
    assert out[:, 0, 0].tolist() == [0.0] * 6
    # The offset changes the ratio: NDVI of unharmonised DN would differ.
    shifted = recipe.apply(data + np.uint16(1000), valid)
    assert np.abs(shifted[4] - out[4]).max() > 0.01


def test_index_channels_need_their_bands_and_known_names():
    with pytest.raises(BandMismatchError, match="swir1 band 'B11'"):
        InputRecipe(BANDS, NORM, indices=("ndbi",))
    with pytest.raises(ConfigError, match="unknown index channel 'evi'"):
        InputRecipe(BANDS, NORM, indices=("evi",))
    recipe = InputRecipe(BANDS, NORM, indices=("ndbi",), index_bands={"swir1": "B02", "nir": "B08"})
    assert recipe.in_channels == 5


def test_spectral_jitter_draws_a_gain_and_offset_per_band_within_range():
    torch.manual_seed(0)
    jitter = SpectralJitter(gain=0.15, offset=0.01)
    out = jitter(np.ones((4, 8, 8), np.float32))
    per_band = out[:, 0, 0]
    assert np.all(out == per_band[:, None, None])  # one gain and offset per band
    assert np.all((per_band >= 0.85 - 0.01) & (per_band <= 1.15 + 0.01))
    assert len(set(per_band.tolist())) == 4
    torch.manual_seed(0)
    np.testing.assert_array_equal(jitter(np.ones((4, 8, 8), np.float32)), out)
    with pytest.raises(ConfigError):
        SpectralJitter(gain=1.5)


MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
 <n1:General_Info><Product_Info><PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
 <Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>
 <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
 </QUANTIFICATION_VALUES_LIST>{offsets}</Product_Image_Characteristics>
 </Product_Info></n1:General_Info></n1:Level-2A_User_Product>
"""


def _safe(tmp_path: Path, baseline: str, offsets: list[int]) -> Path:
    safe = tmp_path / f"S2B_MSIL2A_{baseline}.SAFE"
    img = safe / "GRANULE" / "L2A_T33UUU" / "IMG_DATA" / "R10m"
    img.mkdir(parents=True)
    tags = "".join(
        f'<BOA_ADD_OFFSET band_id="{i}">{v}</BOA_ADD_OFFSET>' for i, v in enumerate(offsets)
    )
    block = f"<BOA_ADD_OFFSET_VALUES_LIST>{tags}</BOA_ADD_OFFSET_VALUES_LIST>" if offsets else ""
    (safe / "MTD_MSIL2A.xml").write_text(MTD.format(baseline=baseline, offsets=block))
    band = img / "T33UUU_B04_10m.jp2"
    band.write_bytes(b"")
    return band


def test_product_metadata_gives_the_offset(tmp_path):
    assert read_product_offset([_safe(tmp_path, "05.09", [-1000] * 13)]) == -1000.0
    assert read_product_offset([_safe(tmp_path, "04.00", [])]) == -1000.0  # baseline rule
    assert read_product_offset([_safe(tmp_path, "02.14", [])]) == 0.0
    assert read_product_offset([tmp_path / "plain.tif"]) is None
    with pytest.raises(InputFileError, match="per-band offsets"):
        read_product_offset([_safe(tmp_path, "09.99", [-1000, -900])])


def test_train_input_section_builds_the_recipe_options(tmp_path):
    cfg = TrainConfig(
        chips=tmp_path, out=tmp_path,
        input={"scale": "reflectance", "dn_offset": -1000, "indices": ["ndvi"],
               "index_bands": {"nir": "B8A"}},
        augment={"gain": 0.15, "offset": 0.01},
    )  # fmt: skip
    options = cfg.fit_kwargs()["options"]
    assert options.scale == REFLECTANCE_SCALE and options.dn_offset == -1000
    assert options.indices == ("ndvi",) and options.index_bands["nir"] == "B8A"
    assert options.index_bands["red"] == "B04"
    assert options.spectral == SpectralJitter(0.15, 0.01)
    with pytest.raises(ValueError, match="indices"):
        TrainConfig(chips=tmp_path, out=tmp_path, input={"indices": ["evi"]})


RECIPE_RUN = TrainingOptions(
    model_options={"depth": 2, "base_channels": 4},
    optimizer=OptimizerOptions(lr=0.02, warmup_fraction=0.0),
    spectral=SpectralJitter(gain=0.15, offset=0.01),
    scale=REFLECTANCE_SCALE,
    indices=("ndvi", "ndwi"),
    epochs=2,
    batch_size=2,
    progress_bar=False,
    val_samples=2,
    patience=None,
)


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("recipe")
    chips = make_chips(root)
    return chips, fit(chips, root / "run", options=RECIPE_RUN)


def test_the_model_file_records_the_recipe(recipe_run):
    _, run = recipe_run
    meta = read_model_metadata(run.model_path)
    assert meta.in_channels == 6 and meta.bands == BANDS
    assert meta.recipe == {
        "scale": REFLECTANCE_SCALE, "offset": 0.0, "indices": ["ndvi", "ndwi"],
        "index_bands": {"red": "B04", "green": "B03", "nir": "B08", "swir1": "B11"},
    }  # fmt: skip
    assert _header(run.model_path)["format_version"] == 2
    assert load_model_file(run.model_path).model(torch.zeros(1, 6, 32, 32)).shape[1] == 4


def test_index_channels_are_recomputed_identically_at_predict_time(recipe_run):
    """Predict's chip reader gives the very tensors training read for the same window."""
    chips, run = recipe_run
    meta = read_model_metadata(run.model_path)
    spec = ModelSpec.from_metadata(meta)
    dataset = ChipDataset(chips, "val", recipe=meta.input_recipe())
    index = read_index(chips).set_index("chip_id")
    scene = open_scene(json.loads((chips / "tiling.json").read_text())["scene"]["paths"])
    for sample in (dataset[i] for i in range(len(dataset))):
        with rasterio.open(chips / index.loc[sample["chip_id"], "image"]) as src:
            bounds, size = src.bounds, src.shape
        window = from_bounds(*bounds, transform=scene.transform).round_offsets().round_lengths()
        chip = type("C", (), {"window": window})()
        x, _ = _read_chip(scene, spec, chip)
        assert x.shape == (6, *size)
        np.testing.assert_array_equal(x, sample["image"].numpy())


def _header(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["geounet"])


def _baseline_04_copy(scene: Path, out: Path) -> Path:
    """The scene as processing baseline 04.00 delivers it: the ground reads 1000 DN brighter."""
    with rasterio.open(scene) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(out, "w", **profile) as dst:
        # Nodata (0) stays 0, as in real products.
        dst.write(np.where(data == 0, 0, data + 1000).astype(data.dtype))
        dst.descriptions = BANDS
    return out


def test_a_baseline_04_scene_predicts_exactly_like_the_original(recipe_run, tmp_path):
    chips, run = recipe_run
    scene = Path(json.loads((chips / "tiling.json").read_text())["scene"]["paths"][0])
    shifted = _baseline_04_copy(scene, tmp_path / "shifted.tif")
    base = predict_scene(run.model_path, scene, tmp_path / "a", probabilities=True, device="cpu")
    same = predict_scene(
        run.model_path, shifted, tmp_path / "b", probabilities=True, device="cpu", dn_offset=-1000
    )
    raw = predict_scene(run.model_path, shifted, tmp_path / "c", probabilities=True, device="cpu")
    with rasterio.open(base.probabilities) as a, rasterio.open(same.probabilities) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with rasterio.open(base.probabilities) as a, rasterio.open(raw.probabilities) as c:
        assert not np.array_equal(a.read(), c.read())


def test_old_model_files_without_a_recipe_still_load_and_predict(tmp_path):
    from geounet.classes import ClassScheme
    from geounet.modelfile import save_model_file
    from geounet.models import create_model, describe_model

    model = create_model("unet", in_channels=4, num_classes=4, depth=2, base_channels=4)
    meta = ModelMetadata(describe_model(model), BANDS, NORM, ClassScheme.default(), 32, (10, 10))
    path = save_model_file(tmp_path / "old.safetensors", model, meta)
    header = _header(path)
    assert header["format_version"] == 1 and "input" not in header
    loaded = load_model_file(path)
    assert loaded.metadata.recipe == {} and loaded.metadata.input_recipe().is_default
    assert ModelSpec.from_metadata(loaded.metadata).recipe is None


def test_auto_class_weights_favour_rare_classes(recipe_run):
    from geounet.training import _resolve_class_weights

    chips, run = recipe_run
    info = read_chips_info(chips)
    weights = _resolve_class_weights(info, {"class_weights": "auto", "gamma": 2})
    assert weights["gamma"] == 2
    train = read_index(chips).query("split == 'train'")
    counts = np.asarray([train[f"px_{n}"].sum() for n in info.classes.names], float)
    w = np.asarray(weights["class_weights"])
    assert len(w) == 4 and abs(w.mean() - 1) < 1e-3
    order = np.argsort(counts)  # rarest first: weights fall as counts rise
    assert np.all(np.diff(w[order]) <= 1e-9) and w[order[0]] > w[order[-1]]
    np.testing.assert_allclose(
        w[order[0]] / w[order[-1]], np.sqrt(counts[order[-1]] / counts[order[0]]), rtol=1e-3
    )
    assert _resolve_class_weights(info, {"class_weights": [1, 2, 3, 4]})["class_weights"] == [
        1,
        2,
        3,
        4,
    ]


def test_an_exported_onnx_graph_applies_the_recipe_like_the_model_file(recipe_run, tmp_path):
    """Scale, index channels and the scene's DN offset: the ONNX engine predicts as torch does."""
    from geounet.export import export_onnx

    chips, run = recipe_run
    onnx_path = export_onnx(run.model_path, tmp_path / "model.onnx")
    scene = Path(json.loads((chips / "tiling.json").read_text())["scene"]["paths"][0])
    shifted = _baseline_04_copy(scene, tmp_path / "shifted.tif")
    for path, offset, name in ((scene, None, "plain"), (shifted, -1000, "shifted")):
        by = {}
        for engine, model in (("torch", run.model_path), ("onnx", onnx_path)):
            result = predict_scene(model, path, tmp_path / f"{name}-{engine}", engine=engine,
                                   probabilities=True, device="cpu", dn_offset=offset)  # fmt: skip
            with rasterio.open(result.probabilities) as src:
                by[engine] = src.read().astype(int)
        # uint8 probabilities: float32 rounding in another order moves a value by 1 at most.
        assert np.abs(by["torch"] - by["onnx"]).max() <= 1


GAINS = (0.9, 1.1, 0.87, 1.13)


def _recalibrated_copy(scene: Path, out: Path) -> Path:
    """The scene after a new calibration: a gain per band, then the +1000 DN offset."""
    with rasterio.open(scene) as src:
        profile, data = src.profile, src.read()
    new = np.rint(data * np.asarray(GAINS)[:, None, None]) + 1000
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.where(data == 0, 0, new).astype(data.dtype))
        dst.descriptions = BANDS
    return out


@pytest.fixture(scope="module")
def scene_norm_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scene_norm")
    chips = make_chips(root)
    options = TrainingOptions(
        model_options={"depth": 2, "base_channels": 4},
        optimizer=OptimizerOptions(lr=0.02, warmup_fraction=0.0),
        scale=REFLECTANCE_SCALE, indices=(), normalize="scene", epochs=2, batch_size=2,
        progress_bar=False, val_samples=1, patience=None,
    )  # fmt: skip
    return chips, fit(chips, root / "run", options=options)


def test_scene_statistics_match_the_tiling_statistics(scene_norm_run):
    chips, _ = scene_norm_run
    info = read_chips_info(chips)
    scene = open_scene(json.loads((chips / "tiling.json").read_text())["scene"]["paths"])
    norm = scene_normalization(scene, step=1)
    np.testing.assert_allclose(norm.mean, info.normalization.mean, rtol=1e-6)
    np.testing.assert_allclose(norm.std, info.normalization.std, rtol=1e-4)


def test_scene_normalisation_cancels_a_per_band_gain_and_offset(scene_norm_run, tmp_path):
    chips, run = scene_norm_run
    meta = read_model_metadata(run.model_path)
    assert meta.recipe["normalize"] == "scene"
    scene = Path(json.loads((chips / "tiling.json").read_text())["scene"]["paths"][0])
    shifted = _recalibrated_copy(scene, tmp_path / "shifted.tif")
    base = predict_scene(run.model_path, scene, tmp_path / "a", probabilities=True, device="cpu")
    new = predict_scene(run.model_path, shifted, tmp_path / "b", probabilities=True, device="cpu")
    with rasterio.open(base.probabilities) as a, rasterio.open(new.probabilities) as b:
        pa, pb = a.read().astype(float), b.read().astype(float)
    # Only the rounding of DN * gain to integers differs (at most 0.5 DN of ~150 DN noise).
    assert np.abs(pa - pb).max() < 0.05 * pa.max()
    with rasterio.open(base.classes) as a, rasterio.open(new.classes) as b:
        assert (a.read(1) == b.read(1)).mean() > 0.99
    from geounet.export import export_onnx

    with pytest.raises(ConfigError, match="normalize: scene"):
        export_onnx(run.model_path, tmp_path / "m.onnx")


def test_normalize_is_checked_and_absent_from_training_recipes():
    with pytest.raises(ConfigError, match="normalize"):
        InputRecipe(BANDS, NORM, normalize="chip")
    assert "normalize" not in InputRecipe(BANDS, NORM, scale=REFLECTANCE_SCALE).to_dict()
    scene = InputRecipe(BANDS, NORM, normalize="scene")
    assert not scene.is_default
    assert InputRecipe.from_dict(scene.to_dict(), BANDS, NORM) == scene
