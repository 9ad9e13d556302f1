"""A STAC Item (a JSON file or URL) as a scene: one single-band asset per band.

Assets are named by their key (``red``, ``B04``), their ``eo:bands`` / STAC 1.1 ``bands``
``name`` and ``common_name``; a selection picks assets by any of these (case-insensitive), so a
model trained on ``B02 B03 B04 B08`` finds them in an Earth Search item whose keys are
``blue green red nir``. Hrefs are resolved against the item's own location, URLs read through
``/vsicurl/``. Without a selection every single-band data asset with band metadata is taken,
in the item's order.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from geounet._paths import gdal_path, name_of, suffix_of
from geounet.errors import BandMismatchError, InputFileError

_RASTER_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-hdf")
_NOT_DATA = {"thumbnail", "overview", "visual", "metadata"}


def is_stac_item(path: str | Path) -> bool:
    """Whether ``path`` looks like a STAC Item: a ``.json`` file or URL (read to be sure)."""
    if suffix_of(path) not in (".json", ".geojson"):
        return False
    try:
        item = _read_json(path)
    except InputFileError:
        return False
    return item.get("type") == "Feature" and isinstance(item.get("assets"), dict)


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _read_json(path: str | Path) -> dict[str, Any]:
    text = str(path)
    if text.startswith("/vsicurl/"):
        text = text[len("/vsicurl/") :]
    try:
        if _is_url(text):
            with urllib.request.urlopen(text, timeout=60) as response:  # noqa: S310 - http(s) only
                body = response.read()
        else:
            body = Path(text).read_bytes()
        data = json.loads(body)
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"cannot read the STAC item {path} ({exc}); expected a STAC Item JSON file or URL."
        ) from exc
    if not isinstance(data, dict):
        raise InputFileError(f"{path} is not a STAC Item (a JSON object with assets).")
    return data


def _href(item_path: str, href: str) -> str:
    """An asset href as a path GDAL opens (relative hrefs against the item's folder or URL)."""
    if "://" in href or href.startswith("/"):
        return gdal_path(href)
    base = item_path[len("/vsicurl/") :] if item_path.startswith("/vsicurl/") else item_path
    if _is_url(base):
        return gdal_path(urljoin(base, href))
    return str((Path(base).resolve().parent / href).resolve())


def _band_meta(asset: dict[str, Any]) -> list[dict[str, Any]]:
    bands = asset.get("eo:bands") or asset.get("bands") or []
    return [b for b in bands if isinstance(b, dict)]


def _names(key: str, asset: dict[str, Any]) -> list[str]:
    """Every name an asset answers to: key, band name, common name (lower case)."""
    names = [key]
    for band in _band_meta(asset)[:1]:
        names += [band.get("name"), band.get("common_name"), band.get("eo:common_name")]
    return [n.lower() for n in names if isinstance(n, str) and n]


def _is_raster(asset: dict[str, Any]) -> bool:
    kind = str(asset.get("type", "")).split(";")[0].strip().lower()
    return kind in _RASTER_TYPES or suffix_of(str(asset.get("href", ""))) in (
        ".tif", ".tiff", ".jp2", ".vrt",
    )  # fmt: skip


def stac_band_files(
    path: str | Path, select: Sequence[str] | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """``(item id, [(band, file), ...])`` of a STAC Item's band assets.

    Args:
        path: The item's JSON file or URL.
        select: Names of the bands to take, in order: asset keys, ``eo:bands`` names or common
            names. The band keeps the name it was selected by. ``None``: every single-band
            raster data asset, named by its band ``name`` (else its key).

    Raises:
        InputFileError: Not a STAC Item, or no band asset.
        BandMismatchError: A selected name matches no asset.
    """
    text = gdal_path(path)
    item = _read_json(text)
    if item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
        raise InputFileError(f"{path} is not a STAC Item (type Feature with assets).")
    assets = {
        k: a
        for k, a in item["assets"].items()
        if isinstance(a, dict) and "href" in a and _is_raster(a) and len(_band_meta(a)) <= 1
    }
    item_id = str(item.get("id") or name_of(text).rsplit(".", 1)[0])
    if select is None:
        picked = []
        for key, asset in assets.items():
            roles = set(asset.get("roles") or ["data"])
            if roles & _NOT_DATA or "data" not in roles or not _band_meta(asset):
                continue
            name = _band_meta(asset)[0].get("name") or key
            picked.append((str(name), _href(text, asset["href"])))
        if not picked:
            raise InputFileError(
                f"STAC item {path} has no single-band data asset with eo:bands; pick assets by "
                "key with bands=[...] (--bands)."
            )
        return item_id, picked
    picked = []
    for wanted in select:
        hits = [k for k, a in assets.items() if wanted.lower() in _names(k, a)]
        if not hits:
            known = {k: _names(k, a)[1:] for k, a in assets.items()}
            raise BandMismatchError(
                f"STAC item {path} has no asset for band {wanted!r}; its raster assets (key: "
                f"band names) are {known}. Pick bands by one of these names."
            )
        # A key match wins over a band-name match (B04 as a key, not a 'B04' of another asset).
        key = wanted if wanted in hits else hits[0]
        picked.append((wanted, _href(text, assets[key]["href"])))
    return item_id, picked
