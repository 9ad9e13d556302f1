"""Which bands are drawn as red, green and blue: a ``display_bands`` setting and sensor presets.

Every figure that shows a scene in true colour (the report, the training previews, the
notebooks) asks :func:`rgb_indexes`. ``display_bands`` is either three bands (names or 1-based
indexes, red first) or a preset name of :data:`SENSOR_PRESETS`; without it the sensor is
recognised from the band names:

========================  ==========================  =====================================
sensor                    recognised by               red, green, blue
========================  ==========================  =====================================
Sentinel-2                ``B04 B03 B02``             B04, B03, B02
Landsat 8/9 (OLI)         ``B4 B3 B2`` (``SR_B4``)    B4, B3, B2
Landsat 4/5/7 (TM/ETM+)   ``B1..B7`` + ``LT05_``...   B3, B2, B1
any named RGB             ``red green blue``          red, green, blue (PlanetScope, NAIP)
========================  ==========================  =====================================

Landsat 8/9 and 5/7 share the names ``B1..B7`` with different meanings (``B4`` is red on
OLI, near infrared on TM/ETM+): the product id in the scene name (``LC08_``/``LC09_`` or
``LT05_``/``LE07_``) decides, then the OLI-only bands ``B9``-``B11``; otherwise 8/9 is assumed
and a log line says so. Unnamed 4- and 8-band PlanetScope or NAIP files need their preset.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from geounet.errors import BandMismatchError, ConfigError

log = logging.getLogger(__name__)

SENSOR_PRESETS: dict[str, tuple[str | int, str | int, str | int]] = {
    "sentinel2": ("B04", "B03", "B02"),
    "landsat8-9": ("B4", "B3", "B2"),
    "landsat5-7": ("B3", "B2", "B1"),
    "planetscope4": (3, 2, 1),  # blue, green, red, NIR
    "planetscope8": (6, 4, 2),  # coastal blue, blue, green I, green, yellow, red, red edge, NIR
    "naip": (1, 2, 3),  # red, green, blue, NIR
}
"""Preset name -> (red, green, blue) as band names or 1-based indexes."""

_ALIASES = {
    "s2": "sentinel2", "landsat8": "landsat8-9", "landsat9": "landsat8-9",
    "landsat5": "landsat5-7", "landsat7": "landsat5-7", "landsat4": "landsat5-7",
    "planetscope": "planetscope4",
}  # fmt: skip

_OLI_IDS = re.compile(r"(^|[^A-Z0-9])L[CO]0?[89]", re.IGNORECASE)
_TM_IDS = re.compile(r"(^|[^A-Z0-9])L[TEM]0?[4-7]", re.IGNORECASE)

DisplayBands = str | Sequence[str | int] | None


def _preset(name: str) -> tuple[str | int, ...]:
    key = name.lower().replace("_", "").replace(" ", "").replace("sentinel-2", "sentinel2")
    key = _ALIASES.get(key, key)
    if key not in SENSOR_PRESETS:
        raise ConfigError(
            f"display_bands {name!r} is not a preset; presets are {sorted(SENSOR_PRESETS)}, "
            "or give three bands (names or 1-based indexes), red first."
        )
    return SENSOR_PRESETS[key]


def _index(bands: Sequence[str], item: str | int, setting: object) -> int:
    if isinstance(item, int) and not isinstance(item, bool):
        if not 1 <= item <= len(bands):
            raise BandMismatchError(
                f"display_bands {setting}: index {item} is outside 1..{len(bands)} (the scene "
                f"has bands {list(bands)})."
            )
        return item - 1
    lowered = [b.lower() for b in bands]
    if str(item).lower() not in lowered:
        raise BandMismatchError(
            f"display_bands {setting}: the scene has no band {item!r}; its bands are "
            f"{list(bands)} (or give 1-based indexes)."
        )
    return lowered.index(str(item).lower())


def _detect(bands: Sequence[str], scene_name: str) -> tuple[tuple[str | int, ...], str] | None:
    names = {b.lower() for b in bands}
    if {"b04", "b03", "b02"} <= names:
        return SENSOR_PRESETS["sentinel2"], "Sentinel-2"
    if {"b3", "b2", "b1"} <= names:
        if _TM_IDS.search(scene_name):
            return SENSOR_PRESETS["landsat5-7"], "Landsat 4/5/7"
        if _OLI_IDS.search(scene_name) or names & {"b9", "b10", "b11"}:
            return SENSOR_PRESETS["landsat8-9"], "Landsat 8/9"
        log.info(
            "bands %s look like Landsat; drawing them as Landsat 8/9 (red B4); set "
            "display_bands: landsat5-7 for Landsat 4/5/7.",
            list(bands),
        )
        return SENSOR_PRESETS["landsat8-9"], "Landsat 8/9"
    if {"red", "green", "blue"} <= names:
        return ("red", "green", "blue"), "named red/green/blue"
    return None


def rgb_indexes(
    bands: Sequence[str], display_bands: DisplayBands = None, *, scene_name: str = ""
) -> list[int]:
    """The 0-based indexes of the bands to draw as red, green, blue.

    Args:
        bands: The scene's band names, in order.
        display_bands: Three bands (names, case-insensitive, or 1-based indexes), red first,
            or a preset name of :data:`SENSOR_PRESETS`; ``None`` recognises the sensor from
            the band names (module docstring) and falls back to the first three bands.
        scene_name: The scene (or file) name; a Landsat product id in it tells Landsat 8/9
            from 5/7.

    Returns:
        Three 0-based band indexes (a one-band scene gives ``[0, 0, 0]``).

    Raises:
        ConfigError: An unknown preset or not three bands.
        BandMismatchError: A band the scene does not have.
    """
    bands = list(bands)
    if display_bands is not None:
        items = _preset(display_bands) if isinstance(display_bands, str) else tuple(display_bands)
        if len(items) != 3:
            raise ConfigError(
                f"display_bands {display_bands!r} must name three bands (red, green, blue), "
                f"got {len(items)}."
            )
        return [_index(bands, item, display_bands) for item in items]
    found = _detect(bands, scene_name)
    if found is not None:
        return [_index(bands, item, found[1]) for item in found[0]]
    return [min(i, len(bands) - 1) for i in range(3)]
