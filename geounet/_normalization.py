"""Per-band normalisation ``(x - mean) / std`` of a model's input (no torch: onnx needs it too)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from geounet.errors import BandMismatchError, ConfigError, InputFileError


@dataclass(frozen=True)
class Normalization:
    """Per-band normalisation ``(x - mean) / std``.

    Attributes:
        mean: Mean per band, in band order.
        std: Standard deviation per band; a band with ``std == 0`` (constant) is divided by 1.
        p2: Optional 2nd percentile per band (for display stretches), or ``None``.
        p98: Optional 98th percentile per band, or ``None``.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    p2: tuple[float, ...] | None = None
    p98: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.mean)
        lengths = {len(self.std)} | {len(p) for p in (self.p2, self.p98) if p is not None}
        if n == 0 or lengths != {n}:
            raise ConfigError(
                f"normalisation needs one mean and std per band, got {n} means and lengths "
                f"{sorted(lengths)}."
            )
        if any(not math.isfinite(v) for v in (*self.mean, *self.std)) or min(self.std) < 0:
            raise ConfigError("normalisation mean/std must be finite and std >= 0.")

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.mean)

    @property
    def divisor(self) -> np.ndarray:
        """What each band is divided by: its std, or 1 for a constant band (std 0).

        The one place of that rule: training, predict (torch and onnx) and the exported graph
        all divide by this.
        """
        std = np.asarray(self.std, dtype=np.float32)
        # A constant band would divide by zero; it carries no information anyway.
        return np.where(std > 0, std, np.float32(1.0)).astype(np.float32)

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> Normalization:
        """Build from the content of a ``stats.json`` (keys ``mean``, ``std``, ``per_band``)."""
        try:
            mean = tuple(float(v) for v in stats["mean"])
            std = tuple(float(v) for v in stats["std"])
        except (KeyError, TypeError) as exc:
            raise InputFileError(f"stats lack per-band 'mean'/'std' lists: {exc}") from exc
        per_band = stats.get("per_band") or {}
        bands = stats.get("bands") or []
        try:
            p2 = tuple(float(per_band[b]["percentiles"]["p2"]) for b in bands)
            p98 = tuple(float(per_band[b]["percentiles"]["p98"]) for b in bands)
        except (KeyError, TypeError):
            p2 = p98 = None
        if len(bands) != len(mean) or not p2:
            p2 = p98 = None
        return cls(mean, std, p2, p98)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the model file's ``normalization``)."""
        out: dict[str, Any] = {"mean": list(self.mean), "std": list(self.std)}
        if self.p2 is not None and self.p98 is not None:
            out["p2"], out["p98"] = list(self.p2), list(self.p98)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        p2, p98 = data.get("p2"), data.get("p98")
        return cls(
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["std"]),
            tuple(float(v) for v in p2) if p2 is not None else None,
            tuple(float(v) for v in p98) if p98 is not None else None,
        )

    def apply(self, image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Normalise a ``(bands, H, W)`` array of any dtype to float32.

        Args:
            image: Raw pixel values, band order as in ``stats.json``.
            valid: Optional ``(H, W)`` bool mask; pixels where it is False become 0.

        Returns:
            A float32 array of the same shape.

        Raises:
            BandMismatchError: If the band count differs from the statistics'.
        """
        if image.shape[0] != self.count:
            raise BandMismatchError(
                f"image has {image.shape[0]} bands but the normalisation statistics have "
                f"{self.count}; use the statistics of the chips folder the image came from."
            )
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        out = (image.astype(np.float32) - mean) / self.divisor[:, None, None]
        if valid is not None:
            out[:, ~valid] = 0.0
        return out

    def invert(self, image: np.ndarray) -> np.ndarray:
        """Undo :meth:`apply` (nodata pixels come back as the band mean)."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        return image * self.divisor[:, None, None] + mean
