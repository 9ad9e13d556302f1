"""Scene inputs that are containers of band files: a Sentinel-2 SAFE product or a STAC Item.

:func:`expand_scene_input` turns one such path into its band files (and names), which
:func:`geounet.raster.open_scene` then stacks like any band files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geounet._paths import name_of
from geounet._safe import is_safe, safe_band_files
from geounet._stac_scene import is_stac_item, stac_band_files
from geounet.errors import ConfigError


@dataclass(frozen=True)
class ExpandedScene:
    """A container scene's name and its ``(band name, file)`` pairs in band order."""

    name: str
    bands: tuple[tuple[str, str], ...]


def is_container(path: str | Path) -> bool:
    """Whether ``path`` is a SAFE product or a STAC Item (not a raster GDAL opens itself)."""
    return is_safe(path) or is_stac_item(path)


def expand_scene_input(
    paths: Sequence[str], select: Sequence[str] | None = None
) -> ExpandedScene | None:
    """The band files of a one-path SAFE or STAC scene; ``None`` for plain rasters.

    Raises:
        ConfigError: ``select`` given for plain rasters (it picks a container's bands).
    """
    if len(paths) == 1 and is_safe(paths[0]):
        name = name_of(paths[0])
        for suffix in (".zip", ".SAFE", ".safe"):
            name = name.removesuffix(suffix)
        return ExpandedScene(name, tuple(safe_band_files(paths[0], select)))
    if len(paths) == 1 and is_stac_item(paths[0]):
        item_id, bands = stac_band_files(paths[0], select)
        return ExpandedScene(item_id, tuple(bands))
    if select is not None:
        raise ConfigError(
            f"bands {list(select)} pick the bands of a SAFE product or a STAC item, but the scene "
            f"{', '.join(paths)} is raster file(s); pass the band files you want instead."
        )
    return None
