"""Sensor-aware input recipe: radiometric scaling, offset harmonisation, index channels.

A model sees its scene through an :class:`InputRecipe`, stored in the model file so that
``predict`` prepares pixels exactly as training did:

1. **Harmonise and scale**: ``x = (DN + offset) * scale``. Sentinel-2 L1C/L2A and Landsat
   Collection 1 surface reflectance are quantised as ``reflectance * 10000`` (Landsat
   Collection 2 Level-2 as ``(reflectance + 0.2) / 2.75e-5``: scale 2.75e-5, offset
   -7272.7273). Since processing baseline 04.00 (25 January 2022) Sentinel-2 products add
   ``+1000`` DN (``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` of -1000 in the product metadata),
   so the same ground reads 1000 DN brighter. ``offset`` is the scene's own: read from
   ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` beside the band files (:func:`read_product_offset`)
   or given per scene. A scene of baseline 04.00 and the same scene of an older baseline then
   give bit-identical model inputs.
2. **Spectral jitter** (training only, :class:`SpectralJitter`): a random gain per band and an
   offset per band, as a new date or sensor calibration would give.
3. **Index channels** (optional): NDVI, NDWI (McFeeters), NDBI from named bands of the
   harmonised values, appended after the bands (values in [-1, 1], 0 where invalid).
4. **Normalise** the bands with the training chips' mean and standard deviation, carried into
   the harmonised units (``mean' = (mean + offset) * scale``, ``std' = std * scale``), so that on
   the training scene the result equals the plain ``(DN - mean) / std`` of older geounet.
   With ``normalize: scene`` predict uses the predicted scene's own band mean and standard
   deviation instead (:func:`scene_normalization`, over its valid pixels): a per-band gain and
   offset of a new date or calibration then cancel exactly, at the price of assuming the new
   scene holds a similar mix of land cover (a scene of mostly sea gets other statistics).

The default recipe (scale 1, offset 0, no indices) is exactly the normalisation of model files
written before recipes existed, which therefore load and predict unchanged.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geounet.data import Normalization
from geounet.errors import BandMismatchError, ConfigError, InputFileError

log = logging.getLogger(__name__)

REFLECTANCE_SCALE = 1e-4
"""DN to reflectance of Sentinel-2 L1C/L2A and Landsat Collection 1 SR (quantised by 10000)."""

INDEX_FORMULAS: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),
    "ndwi": ("green", "nir"),
    "ndbi": ("swir1", "nir"),
}
"""Normalised differences ``(a - b) / (a + b)`` by the roles of their two bands."""

SENTINEL2_INDEX_BANDS: dict[str, str] = {"red": "B04", "green": "B03", "nir": "B08", "swir1": "B11"}
"""Band names of each index role for Sentinel-2 (Landsat 8/9: B4, B3, B5, B6)."""

NORMALIZE_MODES = ("training", "scene")
"""Whose band statistics normalise the input: the training scene's, or each scene's own."""

_METADATA_FILES = ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")
_OFFSET_TAGS = ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET")


@dataclass(frozen=True)
class SpectralJitter:
    """Random per-band gain and offset on the harmonised values (training augmentation).

    Each band of each sample is mapped to ``x * g + o`` with ``g`` uniform in
    ``[1 - gain, 1 + gain]`` and ``o`` uniform in ``[-offset, offset]`` (in the recipe's units:
    reflectance when it scales to reflectance, else DN). Random numbers come from torch's global
    generator, which Lightning seeds in every worker, so a seeded run is reproducible.

    Attributes:
        gain: Half-width of the gain range (0.15 gives 0.85-1.15); 0 disables.
        offset: Half-width of the offset range; 0 disables.
    """

    gain: float = 0.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.gain < 1 or self.offset < 0:
            raise ConfigError(
                f"spectral gain must be in [0, 1) and offset >= 0, got {self.gain} and "
                f"{self.offset}."
            )

    @property
    def enabled(self) -> bool:
        """Whether the jitter changes anything."""
        return self.gain > 0 or self.offset > 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """A jittered copy of a ``(bands, H, W)`` float32 array."""
        n = x.shape[0]
        g = 1.0 + (torch.rand(n, dtype=torch.float64).numpy() * 2 - 1) * self.gain
        o = (torch.rand(n, dtype=torch.float64).numpy() * 2 - 1) * self.offset
        return (x * g[:, None, None] + o[:, None, None]).astype(np.float32)


@dataclass(frozen=True)
class InputRecipe:
    """How raw scene pixels become model input (stored in the model file's ``input``).

    Attributes:
        bands: Band names in order.
        normalization: Per-band mean/std of the training chips in their raw DN (``stats.json``).
        scale: Multiplier after the offset (:data:`REFLECTANCE_SCALE` for reflectance; 1 keeps
            DN).
        offset: DN added to the training scene to harmonise it (``-1000`` for a Sentinel-2
            product of baseline >= 04.00, else 0).
        indices: Index channels appended after the bands (names of :data:`INDEX_FORMULAS`).
        index_bands: Band name of each index role (``red``, ``green``, ``nir``, ``swir1``).
        normalize: ``training``: the training statistics; ``scene``: each predicted scene's own
            (:meth:`for_scene`; training uses its scene's, which ``stats.json`` holds).

    Raises:
        ConfigError: An unknown index or ``normalize``, or ``scale <= 0``.
        BandMismatchError: An index needs a band the scene does not have.
    """

    bands: tuple[str, ...]
    normalization: Normalization
    scale: float = 1.0
    offset: float = 0.0
    indices: tuple[str, ...] = ()
    index_bands: Mapping[str, str] = field(default_factory=lambda: dict(SENTINEL2_INDEX_BANDS))
    normalize: str = "training"

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_MODES:
            raise ConfigError(
                f"normalize must be one of {list(NORMALIZE_MODES)}, got {self.normalize!r}."
            )
        if not self.scale > 0:
            raise ConfigError(f"radiometric scale must be > 0, got {self.scale}.")
        if len(self.bands) != self.normalization.count:
            raise BandMismatchError(
                f"{len(self.bands)} band names but statistics for {self.normalization.count}."
            )
        for name in self.indices:
            if name not in INDEX_FORMULAS:
                raise ConfigError(
                    f"unknown index channel {name!r}; choose from {sorted(INDEX_FORMULAS)}."
                )
            for role in INDEX_FORMULAS[name]:
                band = self.index_bands.get(role)
                if band not in self.bands:
                    raise BandMismatchError(
                        f"index {name} needs the {role} band {band!r}, which is not among the "
                        f"bands {list(self.bands)}; set index_bands: {{{role}: <band name>}}."
                    )

    @property
    def in_channels(self) -> int:
        """Channels the model reads: the bands, then the index channels."""
        return len(self.bands) + len(self.indices)

    @property
    def band_normalization(self) -> Normalization:
        """The training statistics in harmonised units (``(mean + offset) * scale``)."""
        n = self.normalization
        return Normalization(
            tuple((m + self.offset) * self.scale for m in n.mean),
            tuple(s * self.scale for s in n.std),
        )

    def apply(
        self,
        data: np.ndarray,
        valid: np.ndarray | None = None,
        *,
        offset: float | None = None,
        jitter: SpectralJitter | None = None,
    ) -> np.ndarray:
        """Turn a raw ``(bands, H, W)`` array into the model's float32 input.

        Args:
            data: Raw pixel values (DN), bands in :attr:`bands` order.
            valid: Optional ``(H, W)`` bool mask; invalid pixels become 0 in every channel.
            offset: The DN offset that harmonises this scene (``None``: the training scene's).
            jitter: Optional random spectral jitter (training only).

        Returns:
            ``(in_channels, H, W)`` float32: normalised bands, then index channels.
        """
        if data.shape[0] != len(self.bands):
            raise BandMismatchError(
                f"image has {data.shape[0]} bands but the model reads {len(self.bands)} "
                f"{list(self.bands)}."
            )
        shift = self.offset if offset is None else offset
        x = data.astype(np.float32)
        if shift != 0 or self.scale != 1:
            # float64 keeps (DN + offset) * scale exact to float32 rounding for any DN.
            x = ((data.astype(np.float64) + shift) * self.scale).astype(np.float32)
        if jitter is not None and jitter.enabled:
            x = jitter(x)
        channels = [self.band_normalization.apply(x, valid)]
        for name in self.indices:
            a, b = (x[self.bands.index(self.index_bands[r])] for r in INDEX_FORMULAS[name])
            total = a + b
            with np.errstate(divide="ignore", invalid="ignore"):
                index = np.where(total != 0, (a - b) / total, np.float32(0.0))
            index = np.clip(index, -1.0, 1.0).astype(np.float32)
            if valid is not None:
                index[~valid] = 0.0
            channels.append(index[None])
        return np.concatenate(channels) if len(channels) > 1 else channels[0]

    def for_scene(self, normalization: Normalization, offset: float) -> InputRecipe:
        """This recipe with a scene's own statistics (raw DN) and DN offset.

        ``apply(data)`` of the result gives ``(DN - mean) / std`` of the scene in every band,
        so ``DN * g + o`` of the same ground gives the same input; index channels are still
        computed from the harmonised values.
        """
        if normalization.count != len(self.bands):
            raise BandMismatchError(
                f"{normalization.count} band statistics for the {len(self.bands)} bands "
                f"{list(self.bands)}."
            )
        return replace(self, normalization=normalization, offset=offset)

    def to_dict(self) -> dict[str, Any]:
        """The model file's ``input`` entry (bands and statistics are stored beside it)."""
        out: dict[str, Any] = {
            "scale": self.scale,
            "offset": self.offset,
            "indices": list(self.indices),
            "index_bands": dict(self.index_bands),
        }
        if self.normalize != "training":  # absent: files without the key read as before
            out["normalize"] = self.normalize
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, bands: Sequence[str], normalization: Normalization
    ) -> InputRecipe:
        """Inverse of :meth:`to_dict`; ``None`` or ``{}`` (older model files) is the default."""
        data = data or {}
        return cls(
            bands=tuple(bands),
            normalization=normalization,
            scale=float(data.get("scale", 1.0)),
            offset=float(data.get("offset", 0.0)),
            indices=tuple(str(i) for i in data.get("indices", ())),
            index_bands=dict(data.get("index_bands") or SENTINEL2_INDEX_BANDS),
            normalize=str(data.get("normalize", "training")),
        )

    @property
    def is_default(self) -> bool:
        """True for the plain ``(DN - mean) / std`` of model files without a recipe."""
        return (
            self.scale == 1.0
            and self.offset == 0.0
            and not self.indices
            and self.normalize == "training"
        )


def scene_normalization(scene: Any, *, step: int = 2, block: int = 1024) -> Normalization:
    """Per-band mean and standard deviation (raw DN) of a scene's valid pixels.

    Args:
        scene: A :class:`geounet.raster.SceneInfo`.
        step: Use every ``step``-th pixel in both directions (2: a quarter of the pixels;
            the mean of a 1536 x 768 scene moves by well under 0.1 % of its std).
        block: Side of the windows read at a time, pixels.

    Raises:
        InputFileError: The scene has no valid pixel.
    """
    from rasterio.windows import Window

    height, width = scene.shape
    total = np.zeros(scene.count)
    total_sq = np.zeros(scene.count)
    n = 0
    for row in range(0, height, block):
        for col in range(0, width, block):
            window = Window(col, row, min(block, width - col), min(block, height - row))
            data, valid = scene.read_valid(window)
            pixels = data[:, ::step, ::step][:, valid[::step, ::step]].astype(np.float64)
            total += pixels.sum(axis=1)
            total_sq += (pixels**2).sum(axis=1)
            n += pixels.shape[1]
    if n == 0:
        raise InputFileError(
            f"{scene.name}: no valid pixel to compute the scene statistics that this model's "
            "normalize: scene needs; check the scene's nodata value (--nodata)."
        )
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    return Normalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))


def parse_scale(value: str | float) -> float:
    """``"reflectance"`` -> :data:`REFLECTANCE_SCALE`, ``"none"`` -> 1, a number -> itself.

    Raises:
        ConfigError: Any other value.
    """
    if value == "reflectance":
        return REFLECTANCE_SCALE
    if value == "none":
        return 1.0
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not scale > 0:
        raise ConfigError(f"scale must be 'reflectance', 'none' or a number > 0, got {value!r}.")
    return scale


def find_product_metadata(paths: Sequence[str | Path]) -> Path | None:
    """The Sentinel-2 ``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml`` of a scene's files, if any.

    Looked for beside each file and up to four folders above it (a SAFE keeps it at its root,
    the bands in ``GRANULE/<id>/IMG_DATA[/R10m]``).
    """
    for path in paths:
        folder = Path(path).resolve().parent
        for candidate in [folder, *folder.parents][:5]:
            for name in _METADATA_FILES:
                if (candidate / name).is_file():
                    return candidate / name
    return None


def read_product_offset(paths: Sequence[str | Path]) -> float | None:
    """The DN offset that harmonises a Sentinel-2 product to the pre-04.00 convention.

    Args:
        paths: The scene's file(s).

    Returns:
        ``-1000.0`` (or the product's own value) for processing baseline >= 04.00, ``0.0``
        for older products, ``None`` when no product metadata is found.

    Raises:
        InputFileError: The metadata is unreadable or gives different offsets per band.
    """
    mtd = find_product_metadata(paths)
    if mtd is None:
        return None
    try:
        root = ET.parse(mtd).getroot()  # noqa: S314 - a local product file, no entities used
    except (OSError, ET.ParseError) as exc:
        raise InputFileError(
            f"cannot read the product metadata {mtd}: {exc}; fix the file or give the scene's "
            "dn_offset explicitly."
        ) from exc
    offsets = {float(el.text or "nan") for el in root.iter() if _local(el.tag) in _OFFSET_TAGS}
    if offsets:
        if len(offsets) != 1 or not all(np.isfinite(list(offsets))):
            raise InputFileError(
                f"{mtd} gives per-band offsets {sorted(offsets)}; geounet harmonises one offset "
                "for all bands: give the scene's dn_offset explicitly."
            )
        offset = offsets.pop()
    else:
        baseline = next(
            (el.text for el in root.iter() if _local(el.tag) == "PROCESSING_BASELINE"), None
        )
        offset = -1000.0 if baseline and _baseline(baseline) >= (4, 0) else 0.0
    log.info("%s: radiometric offset %+g DN", mtd, offset)
    return offset


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _baseline(text: str) -> tuple[int, ...]:
    """``"04.00"`` -> ``(4, 0)``."""
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def resolve_offset(
    offset: float | str | None, paths: Sequence[str | Path], *, default: float = 0.0
) -> float:
    """A scene's DN offset: a number as given; ``auto``/``None``: its product metadata.

    Args:
        offset: ``auto`` (or ``None``) or a number of DN.
        paths: The scene's files (searched for product metadata).
        default: The offset when ``auto`` finds no metadata.

    Raises:
        ConfigError: ``offset`` is neither ``auto`` nor a number.
    """
    if offset is None or offset == "auto":
        found = read_product_offset(paths)
        return default if found is None else found
    try:
        return float(offset)
    except (TypeError, ValueError):
        raise ConfigError(f"dn_offset must be 'auto' or a number, got {offset!r}.") from None
