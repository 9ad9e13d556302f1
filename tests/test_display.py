"""Display bands: sensor presets recognised from band names, the setting, and red drawn as red."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from _rasters import write_class_raster
from affine import Affine
from PIL import Image

from geounet.display import SENSOR_PRESETS, rgb_indexes
from geounet.errors import BandMismatchError, ConfigError
from geounet.raster import open_scene
from geounet.report import ReportOptions, write_report

GRID = Affine(30, 0, 330000.0, 0, -30, 5822040.0)
SHAPE = (40, 60)
L8 = "LC08_L2SP_193023_20230601_20230607_02_T1_SR"
S2 = [f"B{k:02d}" for k in range(1, 13)]


@pytest.mark.parametrize(
    ("bands", "name", "expected"),
    [
        (["B02", "B03", "B04", "B08"], "", [2, 1, 0]),
        (S2, "T33UUU_20170216", [3, 2, 1]),
        ([f"B{k}" for k in range(1, 8)], L8, [3, 2, 1]),  # OLI: B4 red
        ([f"B{k}" for k in range(1, 8)], "LT05_L2SP_193023_20010601", [2, 1, 0]),  # TM: B3
        ([f"B{k}" for k in range(1, 8)], "LE07_L1TP_193023_20010601", [2, 1, 0]),
        ([f"B{k}" for k in range(1, 12)], "scene", [3, 2, 1]),  # B10, B11: OLI/TIRS
        ([f"B{k}" for k in range(1, 8)], "stack", [3, 2, 1]),  # unknown: 8/9 assumed
        (["coastal_blue", "blue", "green_i", "green", "yellow", "red", "rededge", "nir"], "",
         [5, 3, 1]),  # PlanetScope 8-band descriptions
        (["Red", "Green", "Blue", "NIR"], "", [0, 1, 2]),  # NAIP with named bands
        (["band_1", "band_2", "band_3", "band_4"], "", [0, 1, 2]),  # nothing known: first three
        (["band_1"], "", [0, 0, 0]),
    ],
)  # fmt: skip
def test_the_sensor_is_recognised_from_the_band_names(bands, name, expected):
    assert rgb_indexes(bands, scene_name=name) == expected


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("planetscope4", [2, 1, 0]),
        ("PlanetScope8", [5, 3, 1]),
        ("naip", [0, 1, 2]),
        ("landsat5-7", [2, 1, 0]),
        ("landsat9", [3, 2, 1]),
        ([4, 3, 2], [3, 2, 1]),
        (["b8", "B4", 3], [7, 3, 2]),
    ],
)
def test_display_bands_presets_names_and_indexes(setting, expected):
    bands = [f"B{k}" for k in range(1, 9)]
    assert rgb_indexes(bands, setting) == expected


def test_bad_display_bands_say_what_exists():
    bands = ["B02", "B03", "B04"]
    with pytest.raises(ConfigError, match="presets are"):
        rgb_indexes(bands, "landsat10")
    with pytest.raises(BandMismatchError, match=r"no band 'B08'; its bands are \['B02'"):
        rgb_indexes(bands, ["B08", "B03", "B02"])
    with pytest.raises(BandMismatchError, match=r"index 4 is outside 1..3"):
        rgb_indexes(bands, [4, 2, 1])
    with pytest.raises(ConfigError, match="must name three bands"):
        rgb_indexes(bands, ["B04", "B03"])
    assert set(SENSOR_PRESETS) >= {"sentinel2", "landsat8-9", "landsat5-7", "naip"}


def write_landsat_stack(folder: Path) -> list[Path]:
    """Landsat 8 Collection 2 files ``..._SR_B1.TIF``..``_SR_B7.TIF``: red bright on the left.

    B4 (red) is high in the left half, B3 (green) and B2 (blue) in the right half; every other
    band is flat, so a map that draws any other band as red shows it.
    """
    folder.mkdir()
    left = np.zeros(SHAPE, np.uint16)
    left[:, : SHAPE[1] // 2] = 1
    paths = []
    for k in range(1, 8):
        if k == 4:
            data = 8000 + 20000 * left
        elif k in (2, 3):
            data = 8000 + 20000 * (1 - left)
        else:
            data = np.full(SHAPE, 9000, np.uint16)
        path = folder / f"{L8}_B{k}.TIF"
        profile = dict(driver="GTiff", width=SHAPE[1], height=SHAPE[0], count=1,
                       dtype="uint16", crs="EPSG:32633", transform=GRID)  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data.astype(np.uint16), 1)
        paths.append(path)
    return paths


def test_a_landsat_named_stack_draws_red_as_red(tmp_path):
    paths = write_landsat_stack(tmp_path / "landsat")
    info = open_scene(paths)
    assert info.bands == tuple(f"B{k}" for k in range(1, 8))
    classes = write_class_raster(tmp_path / "classes.tif", np.zeros(SHAPE, np.uint8),
                                 transform=GRID)  # fmt: skip
    html = write_report(tmp_path / "report", scene=paths, classes=classes).read_text()
    assert "True colour (B4, B3, B2" in html
    with Image.open(tmp_path / "report" / "truecolour.png") as png:
        rgb = np.asarray(png.convert("RGB")).astype(int)
    half = rgb.shape[1] // 2
    red_side, other_side = rgb[:, : half - 1], rgb[:, half + 1 :]
    assert (red_side[..., 0] > 200).all() and (red_side[..., 1:] < 50).all()
    assert (other_side[..., 0] < 50).all() and (other_side[..., 1:] > 200).all()

    # The setting wins over the names: B5 (flat) as red leaves the red channel one value.
    write_report(tmp_path / "report", scene=paths, classes=classes,
                 options=ReportOptions(display_bands=["B5", "B3", "B2"]))  # fmt: skip
    with Image.open(tmp_path / "report" / "truecolour.png") as png:
        assert len(np.unique(np.asarray(png.convert("RGB"))[..., 0])) == 1
