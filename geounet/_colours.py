"""Class colours: ``"#rrggbb"`` or ``[r, g, b]`` (the class scheme and the class-map file)."""

from __future__ import annotations

from typing import Any

from geounet.errors import ConfigError


def parse_colour(value: Any, where: str) -> tuple[int, int, int]:
    """Parse ``"#rrggbb"`` or ``[r, g, b]`` into an RGB tuple."""
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        try:
            return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
        except ValueError:
            pass
    elif isinstance(value, list | tuple) and len(value) == 3:
        rgb = tuple(int(v) for v in value)
        if all(0 <= v <= 255 for v in rgb):
            return (rgb[0], rgb[1], rgb[2])
    raise ConfigError(f"{where}: colour {value!r} is not '#rrggbb' or [r, g, b] in 0..255.")
