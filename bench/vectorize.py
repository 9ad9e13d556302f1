"""Benchmark: block-wise ``vectorize_raster`` against whole-raster ``rasterio.features.shapes``.

Writes a synthetic class raster (landscape blobs of other/field/water, clusters of small
buildings, a nodata corner like a Sentinel-2 tile edge), then runs each method in its own
subprocess and reports wall time, CPU time and peak RSS (the child's ``VmHWM``):

    .venv/bin/python bench/vectorize.py [--size 8192] [--block-size 1024] [--simplify-m 10]

The whole-raster baseline reads the full array, polygonises it in one GDAL call, builds shapely
geometries and writes the same GeoPackage fields with pyogrio: what one would write without
geounet. Both outputs are checked to hold the same number of polygons and the same total area.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.vectorize")


def make_class_raster(path: Path, size: int, seed: int = 0) -> None:
    """A size x size uint8 class raster in UTM with the default scheme tag, written in strips."""
    import rasterio
    from affine import Affine
    from scipy import ndimage

    from geounet.classes import ClassScheme
    from geounet.vectorize import SCHEME_TAG

    rng = np.random.default_rng(seed)
    coarse = ndimage.gaussian_filter(rng.standard_normal((size // 8, size // 8)), 3)
    cuts = np.quantile(coarse, [0.35, 0.85])  # other / field / water
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(10, 0, 300000, 0, -10, 5900000),
        nodata=255,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )
    strip = 1024
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, strip):
            rows = slice(row // 8, (row + strip) // 8 + 2)
            fine = ndimage.zoom(coarse[rows], 8, order=1)[:strip]
            data = np.digitize(fine, cuts).astype(np.uint8)
            # Clusters of small buildings (3-9 px), mostly on "other" land.
            for _ in range(strip * size // 300):
                r, c = rng.integers(0, strip - 9), rng.integers(0, size - 9)
                if data[r, c] == 0:
                    data[r : r + rng.integers(3, 10), c : c + rng.integers(3, 10)] = 3
            # A nodata corner, like the edge of a Sentinel-2 tile's swath.
            rr, cc = np.mgrid[row : row + strip, :size]
            data[cc < (rr - size // 2) // 2] = 255
            dst.write(data, 1, window=((row, row + strip), (0, size)))
        dst.update_tags(**{SCHEME_TAG: json.dumps(ClassScheme.default().to_dict())})


def run_blockwise(src: Path, out: Path, block_size: int, simplify_m: float) -> None:
    from geounet.vectorize import vectorize_raster

    vectorize_raster(src, out, block_size=block_size, simplify_m=simplify_m)


def run_whole(src: Path, out: Path) -> None:
    import pyogrio.raw
    import rasterio
    import shapely
    from rasterio.features import shapes

    from geounet.classes import ClassScheme

    names = ClassScheme.default().names
    with rasterio.open(src) as ds:
        data, transform, crs = ds.read(1), ds.transform, ds.crs.to_wkt()
    pairs = [
        (shapely.geometry.shape(g), int(v))
        for g, v in shapes(data, mask=data != 255, connectivity=4, transform=transform)
    ]
    del data
    geoms = np.array([g for g, _ in pairs], dtype=object)
    ids = np.array([v for _, v in pairs], np.int32)
    fields = [ids, np.array([names[i] for i in ids], dtype=object), shapely.area(geoms)]
    pyogrio.raw.write(
        out,
        shapely.to_wkb(geoms),
        fields,
        ["class_id", "class_name", "area_m2"],
        layer="polygons",
        driver="GPKG",
        geometry_type="Polygon",
        crs=crs,
    )


def child(argv: list[str]) -> None:
    """Run one method in this (fresh) process and print its figures as JSON."""
    method, src, out = argv[0], Path(argv[1]), Path(argv[2])
    start, cpu = time.perf_counter(), time.process_time()
    if method == "imports":  # the baseline: what both methods load before any work
        import pyogrio.raw  # noqa: F401
        import rasterio.features  # noqa: F401
        from scipy import ndimage  # noqa: F401

        import geounet.vectorize  # noqa: F401
    elif method == "whole":
        run_whole(src, out)
    else:
        run_blockwise(src, out, int(argv[3]), float(argv[4]))
    print(
        json.dumps(
            {
                "wall_s": time.perf_counter() - start,
                "cpu_s": time.process_time() - cpu,
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


def _peak_rss_mb() -> float:
    """This process's peak RSS. Linux keeps ``ru_maxrss`` across fork + exec (a child starts
    at its parent's peak), so read the address space's own high-water mark when there is one."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(*args: str) -> dict:
    """Run ``child`` in a subprocess; return its figures and a summary of what it wrote."""
    import pyogrio.raw

    cmd = [sys.executable, __file__, "--child", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if args[0] == "imports":
        return result
    _, _, _, fields = pyogrio.raw.read(
        args[2], layer="polygons", columns=["area_m2"], read_geometry=False
    )
    return result | {"polygons": len(fields[0]), "area_m2": float(fields[0].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--simplify-m", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="geounet-bench-vectorize-") as tmp:
        src = Path(tmp) / "classes.tif"
        start = time.perf_counter()
        make_class_raster(src, args.size)
        log.info(
            "class raster %d x %d written in %.1f s",
            args.size,
            args.size,
            time.perf_counter() - start,
        )
        baseline = measure("imports", str(src), "-")["peak_rss_mb"]
        runs = {
            "whole-raster shapes": measure("whole", str(src), str(Path(tmp) / "whole.gpkg")),
            f"block-wise ({args.block_size})": measure(
                "blockwise", str(src), str(Path(tmp) / "blocks.gpkg"), str(args.block_size), "0"
            ),
            f"block-wise + simplify {args.simplify_m:g} m": measure(
                "blockwise",
                str(src),
                str(Path(tmp) / "simple.gpkg"),
                str(args.block_size),
                str(args.simplify_m),
            ),
        }
    log.info(
        "peak RSS of the imports alone (pyogrio loads geopandas and pyarrow): %.0f MB", baseline
    )
    log.info(
        "%-34s %9s %12s %7s %7s %8s %9s",
        "method",
        "polygons",
        "area km2",
        "wall s",
        "cpu s",
        "peak MB",
        "above MB",
    )
    for name, r in runs.items():
        r["above_mb"] = r["peak_rss_mb"] - baseline
        log.info(
            "%-34s %9d %12.3f %7.1f %7.1f %8.0f %9.0f",
            name,
            r["polygons"],
            r["area_m2"] / 1e6,
            r["wall_s"],
            r["cpu_s"],
            r["peak_rss_mb"],
            r["above_mb"],
        )
    whole, blocks = runs["whole-raster shapes"], runs[f"block-wise ({args.block_size})"]
    same = whole["polygons"] == blocks["polygons"] and np.isclose(
        whole["area_m2"], blocks["area_m2"], rtol=1e-9
    )
    log.info("same polygons and area as the whole raster: %s", same)
    log.info(
        "block-wise / whole: time x%.2f (cpu x%.2f), peak RSS x%.2f (above imports x%.2f)",
        blocks["wall_s"] / whole["wall_s"],
        blocks["cpu_s"] / whole["cpu_s"],
        blocks["peak_rss_mb"] / whole["peak_rss_mb"],
        blocks["above_mb"] / whole["above_mb"],
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
