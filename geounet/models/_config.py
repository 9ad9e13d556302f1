"""Option models shared by the U-Net family and the validation they need.

Every model takes ``in_channels``, ``num_classes`` and one frozen dataclass of options
(``UNetConfig``, ...). :func:`geounet.models.create_model` builds that dataclass from keyword
arguments, so the dataclass fields *are* the options a config file may set.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, TypeVar

from geounet.errors import ConfigError

E = TypeVar("E", bound=StrEnum)


class UpMode(StrEnum):
    """How a decoder level doubles the resolution.

    Attributes:
        TRANSPOSE: A 2x2 transposed convolution with stride 2 (the paper's "up-conv").
        BILINEAR: Bilinear upsampling followed by a 1x1 convolution that halves the channels.
    """

    TRANSPOSE = "transpose"
    BILINEAR = "bilinear"


class Padding(StrEnum):
    """Padding of the 3x3 convolutions.

    Attributes:
        SAME: Zero padding of one pixel; the output has the input's height and width.
        VALID: No padding, as in the paper; every convolution trims one pixel per side, so the
            output is smaller than the input (572 -> 388 for depth 4).
    """

    SAME = "same"
    VALID = "valid"


def suggest(name: str, valid: Iterable[str]) -> str:
    """Return a " Did you mean 'x'?" hint for a misspelt name, or an empty string."""
    matches = difflib.get_close_matches(name, list(valid), n=1)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def to_choice(enum_cls: type[E], value: object, option: str) -> E:
    """Convert ``value`` to a member of ``enum_cls``, raising ConfigError with the choices."""
    if isinstance(value, enum_cls):
        return value
    choices = [member.value for member in enum_cls]
    if isinstance(value, str) and value.lower() in choices:
        return enum_cls(value.lower())
    raise ConfigError(
        f"{option}={value!r} is not a valid choice; expected one of {choices}."
        + suggest(str(value), choices)
    )


def check_int(value: object, option: str, *, minimum: int) -> None:
    """Raise ConfigError unless ``value`` is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{option} must be an integer >= {minimum}, got {value!r}.")


def check_io(in_channels: int, num_classes: int) -> None:
    """Validate the two arguments every model shares.

    Raises:
        ConfigError: If either is not a positive integer.
    """
    check_int(in_channels, "in_channels", minimum=1)
    check_int(num_classes, "num_classes", minimum=1)


def check_dropout(value: float) -> None:
    """Raise ConfigError unless ``value`` is a probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"dropout must be a probability in [0, 1), got {value!r}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LevelsConfig:
    """Options of a U-Net made of levels whose channels double with depth.

    Attributes:
        depth: Number of 2x2 max-pooling steps, i.e. encoder levels above the bottleneck.
            Level ``i`` has ``base_channels * 2**i`` channels and the bottleneck
            ``base_channels * 2**depth`` (1024 for the paper's depth 4 and base 64).
        base_channels: Channels of the first level.
        batch_norm: Put a BatchNorm after every 3x3 convolution (the convolutions then have
            no bias). The paper has none.
        up_mode: How a decoder level upsamples, see :class:`UpMode`.
        dropout: Probability of channel dropout (``Dropout2d``) at the end of every
            convolution block; 0 disables it.
    """

    depth: int = 4
    base_channels: int = 64
    batch_norm: bool = True
    up_mode: UpMode = UpMode.TRANSPOSE
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int(self.depth, "depth", minimum=1)
        check_int(self.base_channels, "base_channels", minimum=1)
        if not isinstance(self.batch_norm, bool):
            raise ConfigError(f"batch_norm must be true or false, got {self.batch_norm!r}.")
        check_dropout(self.dropout)
        # Frozen dataclass: normalise the string a YAML file gives into the enum.
        object.__setattr__(self, "up_mode", to_choice(UpMode, self.up_mode, "up_mode"))

    @property
    def channels(self) -> list[int]:
        """Channels per level, from the first level down to the bottleneck."""
        return [self.base_channels * 2**level for level in range(self.depth + 1)]


def json_value(value: Any) -> Any:
    """An option value as plain JSON-friendly data (enums become strings, tuples lists)."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """Turn an options dataclass into plain JSON-friendly values (enums become strings)."""
    return {f.name: json_value(getattr(config, f.name)) for f in dataclasses.fields(config)}
