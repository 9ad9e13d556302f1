"""Tests for geounet.vectorize: block-wise polygons equal whole-raster polygons, and more."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from _rasters import write_class_raster
from affine import Affine
from pyproj import Geod
from rasterio.features import shapes
from scipy import ndimage

from geounet.classes import ClassScheme
from geounet.errors import ConfigError, CRSError, GridMismatchError, InputFileError, OutputError
from geounet.vectorize import LAYER_NAME, vectorize_raster

UTM = ("EPSG:32633", Affine(10.1, 0, 500000.3, 0, -9.7, 5800000.7))
GEOGRAPHIC = ("EPSG:4326", Affine(0.00017, 0, 13.123457, 0, -0.00011, 52.4123))


def write_classes(path, data, crs=UTM[0], transform=UTM[1], scheme=None, nodata=255):
    """A class raster as predict writes it: uint8, nodata 255, scheme in the GEOUNET_CLASSES tag."""
    return write_class_raster(
        path, data, crs=crs, transform=transform, scheme=scheme, nodata=nodata
    )


def write_probabilities(path, probs, crs=UTM[0], transform=UTM[1]):
    profile = dict(
        driver="GTiff",
        width=probs.shape[2],
        height=probs.shape[1],
        count=probs.shape[0],
        dtype="uint8",
        crs=crs,
        transform=transform,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(probs)
    return path


def synthetic_classes(shape=(300, 257), seed=0):
    """Random blobs, single-pixel buildings, a stripe, a ring with a hole and nodata lines."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 6)
    data = np.digitize(noise, np.quantile(noise, [0.3, 0.55, 0.8])).astype(np.uint8)
    data[rng.random(shape) < 0.01] = 3
    data[:, 100:103] = 2
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    ring = np.hypot(rows - 150, cols - 130)
    data[(ring < 60) & (ring > 40)] = 1
    data[10:20:2, 5:250] = 255
    return data


def read_layer(path):
    return pyogrio.read_dataframe(path, layer=LAYER_NAME)


def whole_raster_polygons(data, transform):
    """The reference: rasterio.features.shapes over the whole raster at once."""
    return [
        (shapely.geometry.shape(g), int(v))
        for g, v in shapes(data, mask=data != 255, connectivity=4, transform=transform)
    ]


def canonical(pairs):
    return sorted((cls, shapely.normalize(g).wkb) for g, cls in pairs)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blobs")
    data = synthetic_classes()
    return data, {
        name: write_classes(folder / f"{name}.tif", data, *ref)
        for name, ref in (("utm", UTM), ("geographic", GEOGRAPHIC))
    }


@pytest.mark.parametrize("crs_name", ["utm", "geographic"])
@pytest.mark.parametrize("block_size", [64, 37])
def test_blockwise_equals_whole_raster(tmp_path, blobs, crs_name, block_size):
    data, paths = blobs
    out = vectorize_raster(paths[crs_name], tmp_path / "p.gpkg", block_size=block_size)
    layer = read_layer(out)
    crs, transform = dict(utm=UTM, geographic=GEOGRAPHIC)[crs_name]
    reference = whole_raster_polygons(data, transform)
    # Many regions cross seams, so the merging is what is tested here.
    seams = shapely.MultiLineString(
        [[transform @ (c, 0), transform @ (c, 300)] for c in range(block_size, 257, block_size)]
    )
    assert sum(g.intersects(seams) for g, _ in reference) > 50
    # Same polygons, vertex for vertex (up to ring start and orientation).
    assert canonical(zip(layer.geometry, layer.class_id, strict=True)) == canonical(reference)
    assert layer.geometry.is_valid.all()
    assert sum(len(g.interiors) for g in layer.geometry) > 10  # holes kept
    assert pyogrio.read_info(out, layer=LAYER_NAME)["crs"] == crs
    names = ClassScheme.default().names
    assert (layer.class_name == [names[i] for i in layer.class_id]).all()
    # Areas: planar m2 in UTM; in EPSG:4326 the pixels' cells on the ellipsoid, checked here
    # against Geod areas of single cells summed over each region's pixels.
    if crs_name == "utm":
        expected = {shapely.normalize(g).wkb: g.area for g, _ in reference}
        assert layer.area_m2.sum() == pytest.approx((data != 255).sum() * 10.1 * 9.7, rel=1e-12)
    else:
        expected = cell_area_sums(data, transform, reference)
        geod = Geod(ellps="WGS84")  # the polygons' own geodesic areas agree to 1e-5
        np.testing.assert_allclose(
            layer.area_m2,
            [abs(geod.geometry_area_perimeter(g)[0]) for g in layer.geometry],
            rtol=1e-4,
        )
    got = [expected[shapely.normalize(g).wkb] for g in layer.geometry]
    np.testing.assert_allclose(layer.area_m2, got, rtol=1e-8)


def cell_area_sums(data, transform, polygons):
    """Each polygon's area as the sum of its pixels' cells, measured one by one with Geod."""
    geod = Geod(ellps="WGS84")
    cells = []
    for row in range(data.shape[0]):
        (x0, y0), (x1, y1) = transform @ (0, row), transform @ (1, row + 1)
        cells.append(abs(geod.polygon_area_perimeter([x0, x1, x1, x0], [y0, y0, y1, y1])[0]))
    labels = np.zeros(data.shape, np.int64)
    for value in range(4):
        component, _ = ndimage.label(data == value)
        labels[component > 0] = component[component > 0] + labels.max()
    weights = np.repeat(cells, data.shape[1])
    sums = np.bincount(labels.ravel(), weights=weights)
    inverse = ~transform
    areas = {}
    for geom, _ in polygons:
        point = geom.representative_point()
        col, row = (int(v) for v in inverse @ (point.x, point.y))
        areas[shapely.normalize(geom).wkb] = sums[labels[row, col]]
    return areas


def test_corner_touching_pieces_stay_apart(tmp_path):
    """A diagonal of same-class pixels across seams: 4-connectivity keeps every pixel apart."""
    data = np.zeros((8, 8), np.uint8)
    data[np.arange(8), np.arange(8)] = 2
    data[3:5, 3:5] = 1  # a 2x2 block astride both seams of block_size 4
    path = write_classes(tmp_path / "c.tif", data)
    layer = read_layer(vectorize_raster(path, tmp_path / "p.gpkg", block_size=4))
    assert canonical(zip(layer.geometry, layer.class_id, strict=True)) == canonical(
        whole_raster_polygons(data, UTM[1])
    )
    assert (layer.class_id == 2).sum() == 6 and (layer.class_id == 1).sum() == 1


def test_min_area_is_applied_after_merging(tmp_path):
    data = np.zeros((12, 12), np.uint8)
    data[2:10, 5:7] = 1  # 16 pixels, but at most 4 in any 4x4 block
    data[0, 11] = 2  # 1 pixel
    path = write_classes(tmp_path / "c.tif", data, transform=Affine(10, 0, 0, 0, -10, 0))
    layer = read_layer(
        vectorize_raster(path, tmp_path / "p.gpkg", block_size=4, min_area_m2=5 * 100)
    )
    assert sorted(layer.class_id) == [0, 1]
    assert layer.area_m2[layer.class_id == 1].item() == 1600


def test_class_filter(tmp_path, blobs):
    data, paths = blobs
    layer = read_layer(
        vectorize_raster(
            paths["utm"], tmp_path / "p.gpkg", block_size=64, classes=["water", "building"]
        )
    )
    assert set(layer.class_name) == {"water", "building"}
    reference = [(g, c) for g, c in whole_raster_polygons(data, UTM[1]) if c in (2, 3)]
    assert canonical(zip(layer.geometry, layer.class_id, strict=True)) == canonical(reference)
    with pytest.raises(
        ConfigError,
        match=r"'watr'.*\['other', 'field', 'water', 'building'\]"
        r".*Did you mean 'water'",
    ):
        vectorize_raster(paths["utm"], tmp_path / "q.gpkg", classes=["watr"])


def test_mean_probability_on_a_hand_built_case(tmp_path):
    data = np.array([[1, 1, 1, 2], [0, 0, 1, 2], [0, 255, 2, 2]], np.uint8)
    probs = np.zeros((4, 3, 4), np.uint8)
    probs[1] = [[255, 51, 102, 0], [0, 0, 153, 0], [0, 0, 0, 0]]  # field: 1.0, .2, .4, .6
    probs[2] = [[0, 0, 0, 255], [0, 0, 0, 255], [0, 0, 255, 0]]  # water: 1, 1, 1, 0
    probs[0] = [[9, 9, 9, 9], [51, 102, 9, 9], [153, 9, 9, 9]]  # other: .2, .4, .6
    path = write_classes(tmp_path / "c.tif", data)
    prob_path = write_probabilities(tmp_path / "p.tif", probs)
    layer = read_layer(
        vectorize_raster(path, tmp_path / "p.gpkg", probabilities_path=prob_path, block_size=2)
    )
    by_class = dict(zip(layer.class_id, layer.mean_prob, strict=True))
    assert by_class == pytest.approx({1: 0.55, 2: 0.75, 0: 0.4}, abs=1e-12)


@pytest.mark.parametrize(
    ("crs_name", "block_size", "simplify_m"),
    [("utm", 64, 25.0), ("utm", 37, 12.0), ("utm", 1024, 40.0), ("geographic", 50, 20.0)],
)
def test_simplification_keeps_shared_borders(tmp_path, blobs, crs_name, block_size, simplify_m):
    data, paths = blobs
    plain = read_layer(
        vectorize_raster(paths[crs_name], tmp_path / "a.gpkg", block_size=block_size)
    )
    simple = read_layer(
        vectorize_raster(
            paths[crs_name], tmp_path / "b.gpkg", block_size=block_size, simplify_m=simplify_m
        )
    )
    geoms = np.asarray(simple.geometry.values)
    assert len(simple) == len(plain) and shapely.is_valid(geoms).all()
    assert (
        shapely.get_num_coordinates(geoms).sum()
        < 0.6 * shapely.get_num_coordinates(plain.geometry.values).sum()
    )
    # No overlaps (union == sum) and no gaps (== the area of the valid pixels), in CRS units.
    pixel = abs(dict(utm=UTM, geographic=GEOGRAPHIC)[crs_name][1].determinant)
    total = (data != 255).sum() * pixel
    assert shapely.union_all(geoms).area == pytest.approx(total, rel=1e-9)
    assert shapely.area(geoms).sum() == pytest.approx(total, rel=1e-9)
    # area_m2 stays the classified (pixel) area.
    np.testing.assert_allclose(np.sort(simple.area_m2), np.sort(plain.area_m2))


def test_simplification_with_a_class_filter_keeps_the_full_coverage_borders(tmp_path, blobs):
    path = blobs[1]["utm"]
    everything = read_layer(
        vectorize_raster(path, tmp_path / "a.gpkg", block_size=64, simplify_m=25.0)
    )
    water = read_layer(
        vectorize_raster(
            path, tmp_path / "b.gpkg", block_size=64, simplify_m=25.0, classes=["water"]
        )
    )
    expected = [
        (g, c) for g, c in zip(everything.geometry, everything.class_id, strict=True) if c == 2
    ]
    assert canonical(zip(water.geometry, water.class_id, strict=True)) == canonical(expected)


def test_geopackage_layout_and_style(tmp_path, blobs):
    out = vectorize_raster(blobs[1]["utm"], tmp_path / "polygons.gpkg", block_size=128)
    info = pyogrio.read_info(out, layer=LAYER_NAME)
    assert info["geometry_type"] == "Polygon"
    assert dict(zip(info["fields"], info["dtypes"], strict=True)) == {
        "class_id": "int32",
        "class_name": "object",
        "area_m2": "float64",
    }
    with sqlite3.connect(out) as db:
        name, column, qml, default = db.execute(
            "SELECT f_table_name, f_geometry_column, styleQML, useAsDefault FROM layer_styles"
        ).fetchone()
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200
    assert (name, column, default) == (LAYER_NAME, info["geometry_name"], 1)
    assert 'attr="class_id"' in qml and 'label="water"' in qml and '"30,110,220,255"' in qml
    assert sorted(p.name for p in tmp_path.iterdir()) == ["polygons.gpkg"]  # no temporary left


def test_scheme_comes_from_the_raster_tag_and_unknown_values_get_a_name(tmp_path):
    scheme = ClassScheme.from_records(
        [
            {"id": 0, "name": "land", "color": "#00ff00"},
            {"id": 1, "name": "sea", "color": "#0000ff"},
        ]
    )
    data = np.array([[0, 1], [7, 255]], np.uint8)
    path = write_classes(tmp_path / "c.tif", data, scheme=scheme)
    layer = read_layer(vectorize_raster(path, tmp_path / "p.gpkg"))
    assert sorted(layer.class_name) == ["class_7", "land", "sea"]


def test_all_nodata_gives_an_empty_layer(tmp_path):
    path = write_classes(tmp_path / "c.tif", np.full((5, 5), 255, np.uint8))
    out = vectorize_raster(path, tmp_path / "p.gpkg", block_size=2)
    info = pyogrio.read_info(out, layer=LAYER_NAME)
    assert info["features"] == 0 and info["crs"] == UTM[0]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_bad_inputs_fail_before_work_with_clear_errors(tmp_path):
    data = np.zeros((6, 6), np.uint8)
    good = write_classes(tmp_path / "good.tif", data)
    out = tmp_path / "p.gpkg"
    with pytest.raises(InputFileError, match="missing.tif does not exist"):
        vectorize_raster(tmp_path / "missing.tif", out)
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(InputFileError, match="junk.tif cannot be read"):
        vectorize_raster(tmp_path / "junk.tif", out)
    with rasterio.open(
        tmp_path / "u16.tif",
        "w",
        driver="GTiff",
        width=6,
        height=6,
        count=1,
        dtype="uint16",
        crs=UTM[0],
        transform=UTM[1],
    ) as dst:
        dst.write(data.astype(np.uint16), 1)
    with pytest.raises(InputFileError, match="single-band uint8.*1 band\\(s\\) of uint16"):
        vectorize_raster(tmp_path / "u16.tif", out)
    with rasterio.open(
        tmp_path / "nocrs.tif", "w", driver="GTiff", width=6, height=6, count=1, dtype="uint8"
    ) as dst:
        dst.write(data, 1)
    with pytest.raises(CRSError, match="nocrs.tif has no CRS"):
        vectorize_raster(tmp_path / "nocrs.tif", out)
    probs = np.zeros((4, 6, 6), np.uint8)
    shifted = write_probabilities(
        tmp_path / "shifted.tif", probs, transform=Affine.translation(10, 0) @ UTM[1]
    )
    with pytest.raises(GridMismatchError, match="not on the grid"):
        vectorize_raster(good, out, probabilities_path=shifted)
    three = write_probabilities(tmp_path / "three.tif", probs[:3])
    with pytest.raises(InputFileError, match="expected 4 uint8 bands"):
        vectorize_raster(good, out, probabilities_path=three)
    with pytest.raises(OutputError, match="give a .gpkg path"):
        vectorize_raster(good, tmp_path / "p.shp")
    with pytest.raises(OutputError, match="does not exist"):
        vectorize_raster(good, tmp_path / "nowhere" / "p.gpkg")
    with pytest.raises(ConfigError, match="must be >= 0"):
        vectorize_raster(good, out, simplify_m=-1)
    assert not out.exists()


def test_existing_output_is_replaced_whole(tmp_path):
    path = write_classes(tmp_path / "c.tif", np.zeros((4, 4), np.uint8))
    out = tmp_path / "p.gpkg"
    out.write_text("old")
    assert read_layer(vectorize_raster(path, out)).shape[0] == 1


@pytest.mark.qgis
def test_polygons_open_in_qgis_with_crs_and_style(tmp_path, blobs, qgis_check):
    out = vectorize_raster(
        blobs[1]["utm"], tmp_path / "polygons.gpkg", block_size=64, simplify_m=15.0
    )
    png = tmp_path / "render.png"
    result = qgis_check(out, "--json", "--render", png)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.dumps(json.loads(result.stdout))
    assert "EPSG:32633" in report and "categorizedSymbol" in report
    assert png.stat().st_size > 1000


def test_seam_bookkeeping_stays_bounded_by_a_row(tmp_path, monkeypatch):
    """Open regions and union-find entries depend on the raster width, not its height."""
    from geounet import vectorize

    rng = np.random.default_rng(1)
    data = (ndimage.gaussian_filter(rng.standard_normal((1500, 60)), 2) > 0).astype(np.uint8)
    path = write_classes(tmp_path / "tall.tif", data)
    sizes = []
    close = vectorize._SeamJoiner.close

    def spy(self, seam_ids):
        done = close(self, seam_ids)
        sizes.append((len(self._parent), len(self._regions)))
        return done

    monkeypatch.setattr(vectorize._SeamJoiner, "close", spy)
    layer = read_layer(vectorize_raster(path, tmp_path / "p.gpkg", block_size=20))
    assert len(sizes) == 75 and len(layer) > 200
    assert max(p for p, _ in sizes) <= 60 and max(r for _, r in sizes) <= 30
