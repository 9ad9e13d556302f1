"""Sentinel-2 SAFE products (a ``.SAFE`` folder or its ``.zip``) as scenes: bands found by name.

A SAFE keeps one JPEG 2000 per band under ``GRANULE/<granule>/IMG_DATA/``: ``*_B02.jp2`` in a
Level-1C product, ``R10m/*_B02_10m.jp2``, ``R20m/*_B05_20m.jp2`` and ``R60m/*_B01_60m.jp2`` in a
Level-2A one (where a band comes at several resolutions, the finest is taken). A zip is read in
place through GDAL's ``/vsizip/`` (its member list comes from :mod:`zipfile`), nothing is
extracted. The bands are then stacked like any band files (:func:`geounet.raster.open_scene`).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from geounet._paths import gdal_path, is_virtual, name_of
from geounet.errors import BandMismatchError, InputFileError

S2_BAND_ORDER = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
"""Sentinel-2 MSI bands in the conventional order; a SAFE scene's default band order."""

_EXTRA = ("SCL", "AOT", "WVP")
"""Level-2A layers that are taken only when asked for by name."""

# <granule path>/IMG_DATA/[R10m/]T33UUU_20230101T101031_B02[_10m].jp2 (or .tif).
_BAND_FILE = re.compile(
    r"(^|/)GRANULE/[^/]+/IMG_DATA/(R(?P<res>\d+)m/)?[^/]*_(?P<band>B\d\dA?|B8A|SCL|AOT|WVP)"
    r"(_(?P<res2>\d+)m)?\.(jp2|tif|tiff)$",
    re.IGNORECASE,
)


def is_safe(path: str | Path) -> bool:
    """Whether ``path`` names a SAFE product: ``*.SAFE`` (a folder), ``*.SAFE.zip`` or a zip of one.

    A plain ``.zip`` counts when it holds a ``*.SAFE/`` folder (as ESA's downloads do).
    """
    text = gdal_path(path).rstrip("/")
    lower = text.lower()
    if lower.endswith(".safe") or lower.endswith(".safe.zip"):
        return True
    if lower.endswith(".zip"):
        archive = _local_zip(text)
        if archive is not None and archive.is_file():
            try:
                with zipfile.ZipFile(archive) as z:
                    return any(".safe/" in n.lower() for n in z.namelist()[:50])
            except zipfile.BadZipFile:
                return False
    return False


def _local_zip(text: str) -> Path | None:
    """The local zip file of ``a.zip`` or ``/vsizip/a.zip[/inner]``; None when remote."""
    inner = text[len("/vsizip/") :] if text.startswith("/vsizip/") else text
    if is_virtual(inner):
        return None
    match = re.search(r"\.zip(?=/|$)", inner, re.IGNORECASE)
    return Path(inner[: match.end()]) if match else None


def _members(text: str) -> list[str]:
    """Band file candidates of a SAFE folder or zip, as paths GDAL opens."""
    if text.lower().endswith(".zip") or text.startswith("/vsizip/"):
        archive = _local_zip(text)
        if archive is None:
            raise InputFileError(
                f"{text}: only a local SAFE zip can be listed; download it, or pass its band "
                "files as /vsizip/ paths."
            )
        if not archive.is_file():
            raise InputFileError(f"SAFE zip {archive} does not exist; check the path.")
        try:
            with zipfile.ZipFile(archive) as z:
                names = z.namelist()
        except zipfile.BadZipFile as exc:
            raise InputFileError(
                f"{archive} is not a readable zip ({exc}); re-download the SAFE product."
            ) from exc
        prefix = f"/vsizip/{archive.resolve()}/"
        return [prefix + n for n in names if not n.endswith("/")]
    root = Path(text)
    if not root.is_dir():
        raise InputFileError(f"SAFE folder {root} does not exist or is not a folder.")
    return [str(p) for p in sorted(root.glob("GRANULE/*/IMG_DATA/**/*")) if p.is_file()]


def safe_band_files(path: str | Path, select: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``(band, file)`` of a SAFE product's bands, in ``select`` order or the standard order.

    Args:
        path: A ``.SAFE`` folder, a zip of one, or a ``/vsizip/`` path to either.
        select: Band names to take (``B04``, ``B8A``, ``SCL``...); ``None``: every spectral band
            in :data:`S2_BAND_ORDER` order.

    Raises:
        InputFileError: No band file found (not a SAFE product, or an empty one).
        BandMismatchError: A selected band is not in the product.
    """
    text = gdal_path(path).rstrip("/")
    found: dict[str, tuple[int, str]] = {}
    granules = set()
    for member in _members(text):
        match = _BAND_FILE.search(member)
        if match is None:
            continue
        granules.add(member.split("/GRANULE/")[1].split("/")[0])
        band = match["band"].upper()
        res = int(match["res"] or match["res2"] or 0)
        if band not in found or res < found[band][0]:
            found[band] = (res, member)  # L2A: the finest of R10m/R20m/R60m
    if not found:
        raise InputFileError(
            f"{text} holds no band file GRANULE/*/IMG_DATA/[R??m/]*_B??.jp2; expected a "
            "Sentinel-2 L1C or L2A SAFE product (folder or zip)."
        )
    if len(granules) > 1:
        raise InputFileError(
            f"{name_of(text)} holds {len(granules)} granules {sorted(granules)}; geounet reads one "
            "granule a scene: pass that granule's band files instead."
        )
    wanted = [b.upper() for b in select] if select is not None else None
    if wanted is None:
        wanted = [b for b in S2_BAND_ORDER if b in found]
    missing = [b for b in wanted if b not in found]
    if missing:
        raise BandMismatchError(
            f"{name_of(text)} has no band {missing}; it has {_ordered(found)}. Pick bands it has."
        )
    return [(b, found[b][1]) for b in wanted]


def _ordered(found: dict[str, object]) -> list[str]:
    order = {b: i for i, b in enumerate(S2_BAND_ORDER + _EXTRA)}
    return sorted(found, key=lambda b: order.get(b, len(order)))
