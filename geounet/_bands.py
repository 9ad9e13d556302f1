"""The band check every engine runs before predicting (no torch: the onnx engine needs it too)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from geounet.errors import BandMismatchError

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
    raise BandMismatchError(
        f"{both}: the names or their order differ. Reorder or select the scene's bands to "
        f"{model_bands}."
    )
