"""The I/O boundary with real broken files and a real full disk (a small tmpfs).

A truncated COG fails tile and predict with a message naming the file; a disk that fills at
any byte of predict's outputs gives :class:`DiskFullError` and leaves the previous complete
set; GDAL errors that rasterio only logs during a COG copy still raise.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _models import BANDS, make_model_file
from click.testing import CliRunner
from rasterio.shutil import copy as rio_copy

from geounet.cli.main import cli
from geounet.errors import DiskFullError, OutputError, RasterReadError
from geounet.inference import OUTPUT_NAMES, predict_scene
from geounet.raster import check_raster, write_chip, write_cog
from geounet.sample_data import make_synthetic_scene
from geounet.tiling import TilingOptions, tile_scene
from geounet.vectorize import vectorize_raster

PAGE = 4096
REPO = Path(__file__).resolve().parents[1]


def _scene(path: Path, shape: tuple[int, int] = (90, 130)) -> Path:
    scene = make_synthetic_scene(path, shape=shape, count=len(BANDS), fill="random")
    with rasterio.open(scene, "r+") as ds:
        ds.descriptions = BANDS
    return scene


def _truncated_cog(tmp_path: Path) -> Path:
    """A real COG (DEFLATE, 64 px blocks) cut to two thirds: its header opens, its tail is gone."""
    src = _scene(tmp_path / "full.tif", shape=(256, 256))
    cog = tmp_path / "cog.tif"
    rio_copy(str(src), str(cog), driver="COG", compress="deflate", blocksize=64)
    data = cog.read_bytes()
    cut = tmp_path / "truncated.tif"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with rasterio.open(cut) as ds:  # the header is intact: only reading pixels fails
        assert ds.count == len(BANDS)
    return cut


def test_a_truncated_cog_fails_tile_with_a_named_error_and_no_output(tmp_path):
    cut = _truncated_cog(tmp_path)
    out = tmp_path / "chips"
    with pytest.raises(RasterReadError, match="truncated.tif.*re-download or re-create it"):
        tile_scene(cut, out, options=TilingOptions(chip_size=64))
    assert not out.exists()
    assert not list(tmp_path.glob(".chips.*"))  # no work folder left either


def test_a_truncated_cog_fails_predict_with_a_named_error_and_no_output(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=64)
    cut = _truncated_cog(tmp_path)
    out = tmp_path / "pred"
    with pytest.raises(RasterReadError, match="truncated.tif.*re-download or re-create it"):
        predict_scene(model, cut, out, device="cpu")
    assert not out.exists() or not list(out.iterdir())
    assert not list(tmp_path.glob(".pred.*"))


def test_the_cli_prints_the_message_and_only_with_v_the_traceback(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=64)
    cut = _truncated_cog(tmp_path)
    args = ["predict", str(model), str(cut), "--out", str(tmp_path / "p"), "--device", "cpu"]
    quiet = CliRunner().invoke(cli, args)
    assert quiet.exit_code == 1
    assert "re-download or re-create it" in quiet.output and "Traceback" not in quiet.output
    tiled = CliRunner().invoke(cli, ["tile", str(cut), "--out", str(tmp_path / "c")])
    assert tiled.exit_code == 1 and "truncated.tif" in tiled.output
    assert "Traceback" not in tiled.output
    # In a fresh process: -v sets up logging, which a test session's handlers would pre-empt.
    loud = subprocess.run(
        [sys.executable, "-c", "from geounet.cli.main import cli; cli()", "-v", *args],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr and "RasterReadError" in loud.stderr
    assert "re-download or re-create it" in loud.stderr


@contextmanager
def _tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A real, small file system: writes past ``size`` fail with ENOSPC (needs root)."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); run as root")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _fill(disk: Path, free: int) -> Path:
    """Allocate a filler file so that about ``free`` bytes stay free on ``disk``."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(disk)
    take = st.f_bavail * st.f_frsize - free
    if take > 0:
        with filler.open("wb") as f:
            os.posix_fallocate(f.fileno(), 0, take)
    return filler


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def test_a_disk_filling_at_any_byte_leaves_the_previous_complete_set(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=64)
    scene = _scene(tmp_path / "scene.tif")
    with _tmpfs(tmp_path / "disk", 2 * 1024**2) as disk:
        out = disk / "pred"
        predict_scene(model, scene, out, probabilities=True, device="cpu")
        old = _digests(out)
        assert set(old) == set(OUTPUT_NAMES)
        failed_on, succeeded = set(), 0
        # From enough room for everything down to none, one page at a time: the disk fills
        # at every point of the run, the last file (preview.png) included.
        for free in range(24 * PAGE, -1, -PAGE):
            filler = _fill(disk, free)
            try:
                predict_scene(model, scene, out, probabilities=False, device="cpu")
            except DiskFullError as exc:
                failed_on.add(Path(str(exc).split("writing ", 1)[1].split(":", 1)[0]).name)
                assert "MiB free" in str(exc)
                assert _digests(out) == old, f"free={free}: the old set was touched"
            else:
                succeeded += 1
                # A complete new set: no probabilities from the old run beside it.
                assert set(_digests(out)) == set(OUTPUT_NAMES) - {
                    "probabilities.tif",
                    "probabilities.qml",
                }
                check_raster(out / "classes.tif")
                filler.unlink()
                predict_scene(model, scene, out, probabilities=True, device="cpu")
                old = _digests(out)
            assert {p.name for p in disk.iterdir()} <= {"filler", "pred"}  # no work folder
        assert succeeded and "preview.png" in failed_on and "classes.tif" in failed_on


def test_a_full_disk_while_tiling_or_vectorizing_is_a_named_disk_full_error(tmp_path):
    scene = _scene(tmp_path / "scene.tif", shape=(128, 128))
    with _tmpfs(tmp_path / "disk", 1024**2) as disk:
        _fill(disk, 8 * PAGE)
        with pytest.raises(DiskFullError, match=r"no space left while writing .*MiB free"):
            tile_scene(scene, disk / "chips", options=TilingOptions(chip_size=64))
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
        classes = tmp_path / "classes.tif"
        noise = np.random.default_rng(0).integers(0, 4, (1, 128, 128), dtype=np.uint8)
        with rasterio.open(scene) as src:
            write_chip(classes, noise, crs=src.crs, transform=src.transform, nodata=255)
        _fill(disk, 0)
        with pytest.raises(DiskFullError, match=r"polygons\.gpkg"):
            vectorize_raster(classes, disk / "polygons.gpkg")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_gdal_error_that_rasterio_only_logs_still_fails_the_cog(tmp_path):
    # An 8-bit raster written as 4 bytes of a larger claimed size: GDAL's copy reads it with
    # errors it reports through the error handler; rasterio may log them rather than raise.
    src = tmp_path / "src.tif"
    data = np.random.default_rng(1).integers(0, 255, (1, 512, 512), dtype=np.uint8)
    with rasterio.open(
        src, "w", driver="GTiff", width=512, height=512, count=1, dtype="uint8",
        crs="EPSG:32633", transform=rasterio.transform.from_origin(0, 0, 10, 10),
        tiled=True, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(data)
    raw = src.read_bytes()
    broken = tmp_path / "broken.tif"
    broken.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(OutputError, match="out.tif"):
        write_cog(broken, tmp_path / "out.tif", resampling="mode")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tif", "src.tif"]


def test_a_cog_copy_that_fills_the_disk_without_raising_is_never_published(tmp_path):
    # The bug this guards against: near a full disk GDAL's COG copy returns normally (the
    # "No space left on device" is only logged) and leaves a file that cannot be read.
    src = tmp_path / "src.tif"
    data = np.random.default_rng(0).integers(0, 4, (1, 1024, 1024), dtype=np.uint8)
    with rasterio.open(
        src, "w", driver="GTiff", width=1024, height=1024, count=1, dtype="uint8",
        crs="EPSG:32633", transform=rasterio.transform.from_origin(0, 0, 10, 10),
        tiled=True, compress="zstd",
    ) as dst:  # fmt: skip
        dst.write(data)
    cog_args = {"driver": "COG", "compress": "deflate", "overviews": "auto", "blocksize": 512}
    rio_copy(str(src), str(tmp_path / "ref.tif"), **cog_args)
    size = (tmp_path / "ref.tif").stat().st_size
    with _tmpfs(tmp_path / "disk", 4 * 1024**2) as disk:
        silent = None
        # GDAL writes the overviews to a temporary file first: the room needed exceeds the size.
        for free in range(size * 3 // 2, size * 9 // 10, -PAGE):
            _fill(disk, free)
            probe = disk / "probe.tif"
            try:
                rio_copy(str(src), str(probe), **cog_args)
            except Exception:  # the copy raised: not the silent case
                probe.unlink(missing_ok=True)
                continue
            try:
                check_raster(probe)
            except RasterReadError:
                silent = free
                break
            finally:
                probe.unlink(missing_ok=True)
        assert silent is not None, "no free size made the plain copy fail silently"
        _fill(disk, silent)
        with pytest.raises(DiskFullError, match="classes.tif"):
            write_cog(src, disk / "classes.tif", resampling="mode")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
