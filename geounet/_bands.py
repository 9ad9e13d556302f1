"""Band selection (``bands:`` / ``--bands``) and the band check every engine runs before predicting.

No torch here: the onnx engine needs it too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from geounet.errors import BandMismatchError, ConfigError

log = logging.getLogger(__name__)

_GENERIC_BAND = re.compile(r"^(band[_ ]?)?\d+$", re.IGNORECASE)


def check_scene_bands(
    model_bands: Sequence[str], scene_bands: Sequence[str], scene_name: str = "the scene"
) -> None:
    """Check that a scene has the bands a model was trained on, in the same order.

    A band-count mismatch is always an error. Different names are an error too, except when
    the scene's names are generic (``band_1``, ``2``: a GeoTIFF without band descriptions); then
    the order cannot be checked and a warning is logged.

    Args:
        model_bands: The model's band names in order (``ModelMetadata.bands``).
        scene_bands: The scene's band names in order.
        scene_name: Name used in messages.

    Raises:
        BandMismatchError: The message names both band lists and how to fix it.
    """
    model_bands, scene = list(model_bands), [str(b) for b in scene_bands]
    if model_bands == scene:
        return
    both = (
        f"the model was trained on {len(model_bands)} bands {model_bands}, but {scene_name} "
        f"has {len(scene)} bands {scene}"
    )
    if len(model_bands) != len(scene):
        raise BandMismatchError(
            f"{both}. Give the scene's bands in the model's order (e.g. the same band files), "
            "or train a model on the bands the scene has."
        )
    if all(_GENERIC_BAND.match(b) for b in scene):
        log.warning(
            "%s has no band names; assuming its bands are %s in order", scene_name, model_bands
        )
        return
    lacks = [b for b in model_bands if b not in scene]
    raise BandMismatchError(
        f"{both}: the names or their order differ"
        + (f" ({scene_name} lacks {lacks})" if lacks else "")
        + f". Reorder or select the scene's bands to {model_bands} (`--bands`, `bands:`)."
    )


BandSelection = tuple[str | int, ...]
"""Bands to use, in order: names (``"B04"``) or 1-based indexes (``4``)."""


def parse_band_selection(value: str | Sequence[str | int] | None) -> BandSelection | None:
    """A ``bands`` setting as a tuple: ``"B02,B03"`` -> ``("B02", "B03")``, ``"2,3"`` -> ``(2, 3)``.

    Items that are whole numbers are 1-based band indexes; others are band names.

    Raises:
        ConfigError: An empty selection, an index below 1, or a band given twice.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    parsed: list[str | int] = []
    for item in items:
        text = str(item).strip()
        if not text:
            raise ConfigError(f"bands {value!r} has an empty item; give names or 1-based indexes.")
        parsed.append(int(text) if text.isdecimal() else text)
    if any(isinstance(p, int) and p < 1 for p in parsed):
        raise ConfigError(f"bands {value!r}: indexes are 1-based (the first band is 1).")
    if len(set(parsed)) != len(parsed):
        raise ConfigError(f"bands {value!r} names a band twice; give each band once.")
    return tuple(parsed)


def band_positions(
    available: Sequence[str], selection: Sequence[str | int], source: str = "the scene"
) -> list[int]:
    """0-based positions of ``selection`` (names or 1-based indexes) among ``available``.

    Raises:
        BandMismatchError: A name the scene lacks or an index past its bands; the message
            names ``source``, the missing bands and the available ones.
    """
    names = [str(b) for b in available]
    folded = {n.casefold(): i for i, n in reversed(list(enumerate(names)))}
    positions, missing = [], []
    for item in selection:
        if isinstance(item, int):
            if 1 <= item <= len(names):
                positions.append(item - 1)
            else:
                missing.append(item)
        elif item in names:
            positions.append(names.index(item))
        elif item.casefold() in folded:
            positions.append(folded[item.casefold()])
        else:
            missing.append(item)
    if missing:
        raise BandMismatchError(
            f"{source} has no band {missing} (of the selection {list(selection)}); its bands are "
            f"{names} (indexes 1..{len(names)}). Give names from that list or 1-based indexes "
            "(--bands B02,B03,B04,B08 or --bands 2,3,4,8)."
        )
    if len(set(positions)) != len(positions):
        raise ConfigError(f"bands {list(selection)} select one band of {source} twice.")
    return positions


def match_scene_bands(
    model_bands: Sequence[str], scene_bands: Sequence[str], scene_name: str = "the scene"
) -> list[int] | None:
    """How to read a scene for a model: ``None`` (as it is) or the positions of its bands.

    When the scene has every band of the model by name, in another order or among others,
    the model's bands are picked by name (logged at INFO with the order); otherwise the scene
    must pass :func:`check_scene_bands`.

    Returns:
        ``None`` to read the scene's bands as they are; else the 0-based positions of the
        model's bands in the scene, in the model's order.

    Raises:
        BandMismatchError: As :func:`check_scene_bands`.
    """
    model, scene = list(model_bands), [str(b) for b in scene_bands]
    if model == scene:
        return None
    if len(set(scene)) == len(scene) and set(model) <= set(scene):
        positions = [scene.index(b) for b in model]
        log.info(
            "%s has the model's bands in another order or among others %s; reading them in the "
            "model's order %s (scene bands %s)",
            scene_name, scene, model, [p + 1 for p in positions],
        )  # fmt: skip
        return positions
    check_scene_bands(model, scene, scene_name)
    return None
