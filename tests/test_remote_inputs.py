"""Scene paths GDAL opens pass through untouched: /vsizip/, /vsicurl/ (a loopback server), URLs,
a Sentinel-2 SAFE (folder or zip, L1C or L2A) and a STAC item, in Python, the CLI and jobs."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _http import serve
from _models import BANDS, make_model_file
from affine import Affine
from click.testing import CliRunner

from geounet._paths import gdal_path, name_of
from geounet.cli.main import cli
from geounet.config import resolve_path
from geounet.errors import BandMismatchError, ConfigError, InputFileError
from geounet.inference import predict_scene
from geounet.raster import open_scene

ORIGIN = (400000.0, 5800000.0)
SIZE = 80  # 10 m pixels


def _band(path: Path, band: str, res: int, *, driver: str = "GTiff") -> Path:
    """A single-band uint16 raster whose values say its band (B04 -> 4000 + pixel noise)."""
    n = SIZE * 10 // res
    number = int(band[1:3]) if band[1:3].isdigit() else 8
    rng = np.random.default_rng(number)
    data = (number * 1000 + rng.integers(0, 500, (1, n, n))).astype("uint16")
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": driver, "width": n, "height": n, "count": 1, "dtype": "uint16",
               "crs": "EPSG:32633", "transform": Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1])}  # fmt: skip
    if driver == "GTiff":
        profile.update(tiled=True, blockxsize=16, blockysize=16)  # many ranges to fetch
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _safe_l1c(root: Path, bands=("B02", "B03", "B04", "B08", "B05")) -> Path:
    safe = root / "S2B_MSIL1C_20230615T101559_N0509_R065_T33UUU_20230615T122102.SAFE"
    img = safe / "GRANULE" / "L1C_T33UUU_A032000_20230615T101559" / "IMG_DATA"
    for b in bands:
        _band(img / f"T33UUU_20230615T101559_{b}.tif", b, 20 if b == "B05" else 10)
    (safe / "MTD_MSIL1C.xml").write_text("<n1:Level-1C_User_Product/>")
    return safe


def _safe_l2a(root: Path) -> Path:
    safe = root / "S2B_MSIL2A_20230615T101559_N0509_R065_T33UUU_20230615T140000.SAFE"
    img = safe / "GRANULE" / "L2A_T33UUU_A032000_20230615T101559" / "IMG_DATA"
    for res, bands in ((10, ("B02", "B03", "B04", "B08")), (20, ("B02", "B03", "B04", "B05", "SCL")),
                       (60, ("B01", "B02", "B04", "B05"))):  # fmt: skip
        for b in bands:
            _band(img / f"R{res}m" / f"T33UUU_20230615T101559_{b}_{res}m.tif", b, res)
    return safe


def _zip(folder: Path) -> Path:
    archive = folder.with_name(folder.name + ".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, p.relative_to(folder.parent).as_posix())
    shutil.rmtree(folder)
    return archive


def test_gdal_paths_keep_their_double_slashes_and_map_url_schemes():
    assert gdal_path("s3://bucket/tile/B04.tif") == "/vsis3/bucket/tile/B04.tif"
    assert gdal_path("gs://bucket/B04.tif") == "/vsigs/bucket/B04.tif"
    assert gdal_path("https://host/a/B04.tif?sig=x") == "/vsicurl/https://host/a/B04.tif?sig=x"
    assert gdal_path("/vsicurl/https://host/B04.tif") == "/vsicurl/https://host/B04.tif"
    # What pathlib makes of it (click.Path, pydantic Path fields) is repaired.
    assert gdal_path(Path("/vsicurl/https://host/B04.tif")) == "/vsicurl/https://host/B04.tif"
    assert name_of("https://host/a/T33_B04.jp2?sig=x") == "T33_B04.jp2"
    # Job paths: a URL is never made relative to the job file's folder.
    assert resolve_path("s3://b/k.tif", Path("/jobs")) == "/vsis3/b/k.tif"
    assert resolve_path("scene.tif", Path("/jobs")) == "/jobs/scene.tif"


def test_safe_folder_and_zip_l1c_bands_found_by_name_in_the_usual_order(tmp_path):
    safe = _safe_l1c(tmp_path)
    folder = open_scene(str(safe))
    assert folder.bands == ("B02", "B03", "B04", "B05", "B08")  # B05 (20 m) in S2 order
    assert folder.shape == (SIZE, SIZE) and folder.res == (10.0, 10.0)
    assert folder.name.startswith("S2B_MSIL1C_20230615")
    want = folder.read(rasterio.windows.Window(0, 0, SIZE, SIZE))
    archive = _zip(safe)
    for given in (archive, str(archive), f"/vsizip/{archive}"):
        zipped = open_scene(given)
        assert zipped.bands == folder.bands and zipped.name == folder.name
        assert all(p.startswith("/vsizip/") for p in zipped.paths)
        np.testing.assert_array_equal(zipped.read(rasterio.windows.Window(0, 0, SIZE, SIZE)), want)
    picked = open_scene(archive, select=["B08", "B04"])
    assert picked.bands == ("B08", "B04")
    np.testing.assert_array_equal(picked.read(rasterio.windows.Window(0, 0, SIZE, SIZE)),
                                  want[[4, 2]])  # fmt: skip
    with pytest.raises(BandMismatchError, match=r"no band \['B11'\].*B02"):
        open_scene(archive, select=["B02", "B11"])
    # One band file inside the zip is an ordinary /vsizip/ raster, alone or in a stack.
    inner = next(p for p in zipped.paths if p.endswith("_B04.tif"))
    assert open_scene(inner).bands == ("B04",)


def test_safe_l2a_takes_each_band_at_its_finest_resolution(tmp_path):
    scene = open_scene(_safe_l2a(tmp_path))
    assert scene.bands == ("B01", "B02", "B03", "B04", "B05", "B08")  # SCL only when asked
    by_band = dict(zip(scene.bands, scene.paths, strict=True))
    assert "/R10m/" in by_band["B04"] and "/R20m/" in by_band["B05"] and "/R60m/" in by_band["B01"]
    assert open_scene(
        _zip(tmp_path / next(p.name for p in tmp_path.iterdir())), select=["SCL"]
    ).bands == ("SCL",)


def test_not_a_safe_and_bands_for_plain_files_are_refused_clearly(tmp_path):
    empty = tmp_path / "S2A_MSIL1C_X.SAFE"
    empty.mkdir()
    with pytest.raises(InputFileError, match=r"no band file GRANULE/\*/IMG_DATA"):
        open_scene(empty)
    plain = _band(tmp_path / "B04.tif", "B04", 10)
    with pytest.raises(ConfigError, match="pick the bands of a SAFE product or a STAC item"):
        open_scene(plain, select=["B04"])
    with pytest.raises(InputFileError, match="does not exist"):
        open_scene(tmp_path / "missing.tif")


def test_vsicurl_single_raster_and_band_stack_from_a_loopback_server(tmp_path):
    files = [_band(tmp_path / "www" / f"T33UUU_{b}.tif", b, 20 if b == "B05" else 10)
             for b in ("B02", "B04", "B05")]  # fmt: skip
    local = open_scene([str(p) for p in files])
    whole = rasterio.windows.Window(0, 0, SIZE, SIZE)
    with serve(tmp_path / "www") as (url, seen):
        one = open_scene(f"/vsicurl/{url}/T33UUU_B04.tif")
        assert one.bands == ("B04",) and one.shape == (SIZE, SIZE)
        # /vsicurl/ paths, bare http URLs and a pathlib-collapsed one: all the same stack.
        for paths in ([f"/vsicurl/{url}/{p.name}" for p in files],
                      [f"{url}/{p.name}" for p in files],
                      [Path(f"/vsicurl/{url}/{p.name}") for p in files]):  # fmt: skip
            remote = open_scene(paths)
            assert remote.bands == ("B02", "B04", "B05")
            np.testing.assert_array_equal(remote.read(whole), local.read(whole))
    assert any(rng is not None for _, rng in seen), "GDAL read by Range requests"


def test_cli_predicts_a_remote_band_stack_and_a_zipped_safe(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=32)
    safe = _safe_l1c(tmp_path, bands=("B02", "B03", "B04", "B08", "B11"))
    www = tmp_path / "www"
    www.mkdir()
    img = next(safe.glob("GRANULE/*/IMG_DATA"))
    for b in BANDS:
        shutil.copy(next(img.glob(f"*_{b}.tif")), www / f"T33UUU_{b}.tif")
    archive = _zip(safe)
    runner = CliRunner()
    with serve(www) as (url, _):
        remote = [f"/vsicurl/{url}/T33UUU_{b}.tif" for b in BANDS]
        res = runner.invoke(cli, ["predict", str(model), *remote, "--out", str(tmp_path / "a"),
                                  "--device", "cpu"])  # fmt: skip
        assert res.exit_code == 0, res.output
    # The SAFE holds 5 bands; the model's 4 are picked from it by name.
    res = runner.invoke(cli, ["predict", str(model), str(archive), "--out", str(tmp_path / "b"),
                              "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    with (
        rasterio.open(tmp_path / "a" / "classes.tif") as a,
        rasterio.open(tmp_path / "b" / "classes.tif") as b,
    ):
        assert a.crs == b.crs and a.transform == b.transform
        np.testing.assert_array_equal(a.read(), b.read())


def _stac_item(folder: Path, *, keys=("blue", "green", "red", "nir")) -> Path:
    names = dict(zip(keys, BANDS, strict=True))
    assets = {}
    for key, band in names.items():
        tif = _band(folder / "cogs" / f"{band}.tif", band, 10)
        assets[key] = {"href": f"./cogs/{tif.name}", "type": "image/tiff; application=geotiff",
                       "roles": ["data"], "eo:bands": [{"name": band, "common_name": key}]}  # fmt: skip
    assets["thumbnail"] = {"href": "./thumb.png", "type": "image/png", "roles": ["thumbnail"]}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2B_33UUU_20230615_0_L2A",
            "geometry": None, "properties": {"datetime": "2023-06-15T10:15:59Z"}, "links": [],
            "assets": assets}  # fmt: skip
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path


def test_stac_item_scene_assets_picked_by_band_or_common_name(tmp_path):
    item = _stac_item(tmp_path)
    scene = open_scene(item)
    assert scene.bands == BANDS and scene.name == "S2B_33UUU_20230615_0_L2A"
    assert open_scene(item, select=["nir", "red"]).bands == ("nir", "red")
    assert open_scene(item, select=["B08"]).paths == (
        str((tmp_path / "cogs" / "B08.tif").resolve()),
    )
    with pytest.raises(
        BandMismatchError, match=r"no asset for band 'B11'.*'red': \['b04', 'red'\]"
    ):
        open_scene(item, select=["B11"])


def test_stac_item_by_url_predicts_like_its_local_files(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=32)
    item = _stac_item(tmp_path / "www")
    local = predict_scene(str(model), [str(tmp_path / "www" / "cogs" / f"{b}.tif") for b in BANDS],
                          tmp_path / "local", device="cpu")  # fmt: skip
    with serve(tmp_path / "www") as (url, _):
        remote = predict_scene(str(model), f"{url}/{item.name}", tmp_path / "remote", device="cpu")
    with rasterio.open(local.classes) as a, rasterio.open(remote.classes) as b:
        np.testing.assert_array_equal(a.read(), b.read())
