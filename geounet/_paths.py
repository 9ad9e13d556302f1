"""Scene paths as GDAL sees them: local files, ``/vsi...`` virtual paths and URLs.

``pathlib`` collapses ``//`` (``/vsicurl/https://host/B04.tif`` becomes ``.../https:/host``) and
``Path.exists()`` is False for every virtual path, so scene paths travel as strings and only
local ones are checked or made absolute. URL schemes are mapped the way GDAL's own
``gdalinfo`` users write them (``s3://b/k`` is ``/vsis3/b/k``, ``https://...`` is read through
``/vsicurl/``), as rasterio does for the schemes it knows.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

_SCHEMES = {
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "gcs": "/vsigs/",
    "az": "/vsiaz/",
    "azure": "/vsiaz/",
    "oss": "/vsioss/",
    "swift": "/vsiswift/",
}
"""URL scheme -> the GDAL virtual file system that reads it (``s3://b/k`` -> ``/vsis3/b/k``)."""

_HTTP = ("http://", "https://", "ftp://")
# What pathlib leaves of "https://" inside a virtual path: one slash.
_COLLAPSED_URL = re.compile(r"(?<=/)(https?|ftp):/(?!/)")


def is_virtual(path: str | Path) -> bool:
    """Whether ``path`` is read by a GDAL virtual file system or a URL (not a local file)."""
    text = str(path)
    return text.startswith("/vsi") or "://" in text or text.lstrip().startswith("<VRTDataset")


def gdal_path(path: str | Path) -> str:
    """The string GDAL should open for ``path``: URLs mapped to ``/vsi...``, the rest as given.

    ``s3://``, ``gs://``, ``az://`` become ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``; ``http(s)://``
    is read through ``/vsicurl/`` (range requests, no download); ``zip://a.zip!/b.tif`` (the
    fsspec spelling) becomes ``/vsizip/a.zip/b.tif``. A ``pathlib.Path`` that collapsed the
    ``//`` of a URL inside a virtual path (``/vsicurl/https:/host/x``) gets it back.
    """
    text = str(path)
    if isinstance(path, Path) and text.startswith("/vsi"):
        text = _COLLAPSED_URL.sub(lambda m: m.group(1) + "://", text)
    scheme, sep, rest = text.partition("://")
    if not sep or "/" in scheme:
        return text
    scheme = scheme.lower()
    if scheme in _SCHEMES:
        return _SCHEMES[scheme] + rest
    if text.lower().startswith(_HTTP):
        return "/vsicurl/" + text
    if scheme == "zip":
        archive, _, inner = rest.partition("!")
        return "/vsizip/" + archive + ("/" + inner.lstrip("/") if inner else "")
    if scheme == "file":
        return rest
    return text


def local_exists(path: str | Path) -> bool | None:
    """``Path.exists()`` for a local path; ``None`` (unknown: GDAL will say) for a virtual one."""
    return None if is_virtual(path) else Path(path).exists()


def absolute(path: str | Path) -> str:
    """A local path made absolute and resolved; a virtual path or URL unchanged."""
    text = gdal_path(path)
    return text if is_virtual(text) else str(Path(text).resolve())


def name_of(path: str | Path) -> str:
    """The last component of a local or virtual path, without a URL's query (``?token=...``)."""
    text = gdal_path(path)
    if "://" in text:  # a URL's query and fragment are not part of the file name
        text = re.split(r"[?#]", text, maxsplit=1)[0]
    return posixpath.basename(text.rstrip("/"))


def stem_of(path: str | Path) -> str:
    """:func:`name_of` without its last suffix (``.../T33UUU_B04.jp2?x=1`` -> ``T33UUU_B04``)."""
    name = name_of(path)
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def suffix_of(path: str | Path) -> str:
    """The lower-case last suffix of :func:`name_of` (``.tif``), or ``""``."""
    name = name_of(path)
    _, dot, ext = name.rpartition(".")
    return "." + ext.lower() if dot and _ else ""
