"""Tests for geounet.stac: the STAC Item of a job's outputs, read back with pystac (offline)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_coords

from geounet.classes import SCHEME_TAG, ClassInfo, ClassScheme
from geounet.errors import InputFileError, OutputError
from geounet.stac import COG_MEDIA_TYPE, STAC_EXTENSIONS, ItemAssets, write_stac_item

pystac = pytest.importorskip("pystac")

GRID = Affine(10, 0, 330000.0, 0, -10, 5822040.0)  # 10 m pixels in EPSG:32633
SHAPE = (24, 40)


def write_raster(path, *, count=1, crs="EPSG:32633", transform=GRID, scheme=None, nodata=255):
    """A small uint8 raster; with a scheme, a class raster as `geounet predict` writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (np.arange(count * SHAPE[0] * SHAPE[1]) % 4).astype(np.uint8).reshape(count, *SHAPE)
    profile = dict(
        driver="GTiff",
        width=SHAPE[1],
        height=SHAPE[0],
        count=count,
        dtype="uint8",
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if scheme is not None:
            dst.update_tags(**{SCHEME_TAG: json.dumps(scheme.to_dict())})
    return path


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A job output folder: predict/, vectorize/, evaluate/, train/ files."""
    write_raster(tmp_path / "predict" / "classes.tif", scheme=ClassScheme.default())
    write_raster(tmp_path / "predict" / "probabilities.tif", count=4, nodata=None)
    (tmp_path / "predict" / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "vectorize").mkdir()
    (tmp_path / "vectorize" / "polygons.gpkg").write_bytes(b"SQLite format 3\x00")
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "metrics.json").write_text("{}\n")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "model.safetensors").write_bytes(b"\x00" * 16)
    return tmp_path


def full_assets(job: Path) -> ItemAssets:
    return ItemAssets(
        classes=job / "predict" / "classes.tif",
        probabilities=job / "predict" / "probabilities.tif",
        polygons=job / "vectorize" / "polygons.gpkg",
        metrics=job / "evaluate" / "metrics.json",
        model=job / "train" / "model.safetensors",
        preview=job / "predict" / "preview.png",
    )


def test_item_describes_every_output(job: Path) -> None:
    path = write_stac_item(
        job / "item.json", item_id="demo", assets=full_assets(job), datetime="2017-02-16T10:21:01Z"
    )
    data = json.loads(path.read_text())
    assert data["type"] == "Feature" and data["stac_version"] == "1.0.0"
    assert data["stac_extensions"] == list(STAC_EXTENSIONS)
    assert data["properties"]["datetime"] == "2017-02-16T10:21:01Z"
    assert set(data["assets"]) == {
        "classes",
        "probabilities",
        "polygons",
        "metrics",
        "model",
        "preview",
    }
    assert data["assets"]["classes"]["href"] == "./predict/classes.tif"
    assert data["assets"]["classes"]["type"] == COG_MEDIA_TYPE
    assert data["assets"]["probabilities"]["type"] == COG_MEDIA_TYPE
    assert data["assets"]["polygons"]["type"] == "application/geopackage+sqlite3"
    assert data["assets"]["metrics"]["type"] == "application/json"
    assert data["assets"]["classes"]["roles"] == ["data"]
    assert data["assets"]["metrics"]["roles"] == ["metadata"]
    assert data["assets"]["preview"]["roles"] == ["thumbnail"]
    assert data["assets"]["classes"]["raster:bands"][0]["nodata"] == 255
    assert data["assets"]["classes"]["raster:bands"][0]["data_type"] == "uint8"
    assert len(data["assets"]["probabilities"]["raster:bands"]) == 4
    assert not list(job.glob(".*.tmp*"))  # the temporary file was renamed away

    item = pystac.Item.from_file(str(path))
    assert item.id == "demo"
    assert item.datetime == dt.datetime(2017, 2, 16, 10, 21, 1, tzinfo=dt.UTC)
    for asset in item.assets.values():
        assert Path(asset.get_absolute_href()).is_file()


def test_geometry_and_bbox_hold_the_footprint(job: Path) -> None:
    path = write_stac_item(job / "item.json", item_id="demo", assets=full_assets(job))
    item = pystac.Item.from_file(str(path))
    west, south, east, north = item.bbox
    # The raster's corners and edge midpoints, reprojected independently.
    h, w = SHAPE
    cols = np.array([0, w / 2, w, w, w, w / 2, 0, 0])
    rows = np.array([0, 0, 0, h / 2, h, h, h, h / 2])
    xs, ys = GRID * (cols, rows)
    lon, lat = transform_coords("EPSG:32633", "EPSG:4326", xs, ys)
    assert all(west <= x <= east for x in lon) and all(south <= y <= north for y in lat)
    # The geometry is the footprint: its vertices span the bbox, ring closed.
    ring = np.asarray(item.geometry["coordinates"][0])
    assert ring[0].tolist() == ring[-1].tolist()
    np.testing.assert_allclose(
        [ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max()],
        item.bbox, atol=1e-7,
    )  # fmt: skip
    assert len(ring) > 5  # densified, not just the corners


def test_proj_fields_equal_the_raster(job: Path) -> None:
    from pystac.extensions.projection import ProjectionExtension

    path = write_stac_item(job / "item.json", item_id="demo", assets=full_assets(job))
    item = pystac.Item.from_file(str(path))
    with rasterio.open(job / "predict" / "classes.tif") as src:
        crs, transform, shape, bounds = src.crs, src.transform, src.shape, src.bounds
    for proj in (ProjectionExtension.ext(item), ProjectionExtension.ext(item.assets["classes"])):
        assert CRS.from_user_input(proj.code) == crs
        assert proj.shape == list(shape)
        assert Affine(*proj.transform) == transform
        assert proj.bbox == list(bounds)


def test_classification_classes_equal_the_scheme(job: Path) -> None:
    from pystac.extensions.classification import ClassificationExtension

    path = write_stac_item(job / "item.json", item_id="demo", assets=full_assets(job))
    item = pystac.Item.from_file(str(path))
    classes = ClassificationExtension.ext(item.assets["classes"]).classes
    scheme = ClassScheme.default()
    assert [(c.value, c.name, c.title) for c in classes] == [
        (k.id, k.name, k.name) for k in scheme.classes
    ]
    assert [c.color_hint for c in classes] == [k.hex[1:].upper() for k in scheme.classes]
    assert classes[1].color_hint == "E6B422"  # field: gold


def test_class_names_outside_the_v2_pattern_go_to_title(tmp_path: Path) -> None:
    scheme = ClassScheme((ClassInfo(0, "bare soil", (1, 2, 3)), ClassInfo(1, "forêt", (4, 5, 6))))
    write_raster(tmp_path / "classes.tif", scheme=scheme)
    path = write_stac_item(
        tmp_path / "item.json", item_id="x", assets=ItemAssets(classes=tmp_path / "classes.tif")
    )
    classes = json.loads(path.read_text())["assets"]["classes"]["classification:classes"]
    assert [(c["name"], c["title"]) for c in classes] == [
        ("bare_soil", "bare soil"),
        ("for_t", "forêt"),
    ]


def test_only_the_classes_are_required_and_hrefs_survive_a_move(job: Path, tmp_path: Path) -> None:
    write_stac_item(
        job / "item.json",
        item_id="demo",
        assets=ItemAssets(classes=job / "predict" / "classes.tif"),
    )
    moved = shutil.copytree(job, tmp_path.parent / f"{tmp_path.name}-moved")
    item = pystac.Item.from_file(str(moved / "item.json"))
    assert set(item.assets) == {"classes"}
    assert Path(item.assets["classes"].get_absolute_href()) == moved / "predict" / "classes.tif"


def test_item_outside_the_asset_folder_gets_parent_hrefs(job: Path) -> None:
    (job / "catalog").mkdir()
    path = write_stac_item(
        job / "catalog" / "item.json",
        item_id="demo",
        assets=ItemAssets(classes=job / "predict" / "classes.tif"),
    )
    item = pystac.Item.from_file(str(path))
    assert item.assets["classes"].href == "../predict/classes.tif"
    assert Path(item.assets["classes"].get_absolute_href()).is_file()


def test_datetime_default_is_the_file_time_in_utc(job: Path) -> None:
    classes = job / "predict" / "classes.tif"
    path = write_stac_item(job / "item.json", item_id="demo", assets=ItemAssets(classes=classes))
    stamp = json.loads(path.read_text())["properties"]["datetime"]
    assert stamp.endswith("Z")
    when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert when.timestamp() == pytest.approx(classes.stat().st_mtime, abs=1e-3)


def test_naive_and_aware_datetimes(job: Path) -> None:
    assets = ItemAssets(classes=job / "predict" / "classes.tif")
    naive = dt.datetime(2020, 5, 1, 12, 0)
    path = write_stac_item(job / "item.json", item_id="d", assets=assets, datetime=naive)
    assert json.loads(path.read_text())["properties"]["datetime"] == "2020-05-01T12:00:00Z"
    aware = dt.datetime(2020, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    path = write_stac_item(job / "item.json", item_id="d", assets=assets, datetime=aware)
    assert json.loads(path.read_text())["properties"]["datetime"] == "2020-05-01T12:00:00Z"
    with pytest.raises(ValueError, match="ISO 8601"):
        write_stac_item(job / "item.json", item_id="d", assets=assets, datetime="yesterday")


def test_crs_without_epsg_code_gets_wkt2(tmp_path: Path) -> None:
    crs = CRS.from_proj4("+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80")
    write_raster(tmp_path / "classes.tif", crs=crs,
                 transform=Affine(10, 0, 4500000.0, 0, -10, 3300000.0))  # fmt: skip
    path = write_stac_item(
        tmp_path / "item.json", item_id="x", assets=ItemAssets(classes=tmp_path / "classes.tif")
    )
    props = json.loads(path.read_text())["properties"]
    assert props["proj:code"] is None
    assert CRS.from_wkt(props["proj:wkt2"]) == crs


def test_geographic_raster_bbox_is_its_bounds(tmp_path: Path) -> None:
    transform = Affine(0.001, 0, 13.0, 0, -0.001, 52.5)
    write_raster(tmp_path / "classes.tif", crs="EPSG:4326", transform=transform)
    path = write_stac_item(
        tmp_path / "item.json", item_id="x", assets=ItemAssets(classes=tmp_path / "classes.tif")
    )
    bbox = json.loads(path.read_text())["bbox"]
    np.testing.assert_allclose(bbox, [13.0, 52.5 - 0.024, 13.04, 52.5], atol=1e-9)


def test_missing_or_unreadable_inputs_say_what_to_do(job: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.tif does not exist.*geounet predict"):
        write_stac_item(job / "item.json", item_id="d", assets=ItemAssets(classes=job / "nope.tif"))
    broken = job / "broken.tif"
    broken.write_text("not a raster")
    with pytest.raises(InputFileError, match=r"broken\.tif cannot be read as a raster"):
        write_stac_item(job / "item.json", item_id="d", assets=ItemAssets(classes=broken))
    assets = ItemAssets(classes=job / "predict" / "classes.tif", polygons=job / "gone.gpkg")
    with pytest.raises(InputFileError, match=r"gone\.gpkg does not exist.*vectorize"):
        write_stac_item(job / "item.json", item_id="d", assets=assets)
    assert not (job / "item.json").exists()
    with pytest.raises(OutputError, match="does not exist"):
        write_stac_item(
            job / "no" / "item.json",
            item_id="d",
            assets=ItemAssets(classes=job / "predict" / "classes.tif"),
        )
    with pytest.raises(ValueError, match="item_id"):
        write_stac_item(
            job / "item.json",
            item_id=" ",
            assets=ItemAssets(classes=job / "predict" / "classes.tif"),
        )


def test_core_schema_offline(job: Path) -> None:
    """The item passes the STAC core Item schema that pystac ships (no network).

    pystac bundles the v1.1.0 core schemas only; the 1.0.0 item is checked against them with
    its version set to 1.1.0 (1.1 only added optional fields). Extension schemas are fetched
    over the internet by pystac, so they are not checked here.
    """
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    from pystac.validation.local_validator import get_local_schema_cache

    def no_network(uri: str) -> None:
        raise AssertionError(f"schema {uri} is not bundled; this test must stay offline")

    cache = get_local_schema_cache()
    registry = referencing.Registry(retrieve=no_network).with_resources(
        (uri, referencing.Resource.from_contents(schema, referencing.jsonschema.DRAFT7))
        for uri, schema in cache.items()
    )
    item_uri = next(u for u in cache if u.endswith("item-spec/json-schema/item.json"))
    path = write_stac_item(job / "item.json", item_id="demo", assets=full_assets(job))
    data = {**json.loads(path.read_text()), "stac_version": "1.1.0"}
    validator = jsonschema.Draft7Validator(cache[item_uri], registry=registry)
    validator.validate(data)
    broken = {**data, "assets": {"classes": {"title": "no href"}}}
    with pytest.raises(jsonschema.ValidationError, match="href"):
        validator.validate(broken)
