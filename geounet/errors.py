"""Errors and warnings raised by geounet.

Every error derives from :class:`GeounetError` and from the builtin it refines, so callers
can catch either ``GeounetError`` or, say, ``ValueError`` (the model is rasterio's
``errors.py``). Messages say what was received, what was expected and how to fix it.
"""

from __future__ import annotations


class GeounetError(Exception):
    """Base class of every error geounet raises on purpose."""


class InputFileError(GeounetError, OSError):
    """An input file is missing, unreadable or not of the expected format."""


class RasterReadError(InputFileError):
    """A raster opened but its pixels cannot be read: the file is truncated or corrupt."""


class CRSError(GeounetError, ValueError):
    """A dataset has no CRS, or one that cannot be used."""


class CRSMismatchError(GeounetError, ValueError):
    """Two datasets that must share a CRS do not."""


class GridMismatchError(GeounetError, ValueError):
    """Rasters that must share a grid (size, transform) do not."""


class BandMismatchError(GeounetError, ValueError):
    """A scene's bands do not match what a model or config expects."""


class LabelError(GeounetError, ValueError):
    """Label data cannot be used: missing column, unmapped scheme, no overlap with the scene."""


class ChipSizeError(GeounetError, ValueError):
    """The chip size or stride does not fit the scene."""


class EmptyChipError(GeounetError, ValueError):
    """No chip of the grid holds enough valid pixels."""


class ConfigError(GeounetError, ValueError):
    """A configuration file or option is invalid."""


class ModelFileError(GeounetError, ValueError):
    """A model file is malformed, unsafe (pickle) or incompatible."""


class OutputError(GeounetError, OSError):
    """An output location cannot be written."""


class DiskFullError(OutputError):
    """The disk filled while an output was written; the message says how much was free/needed.

    Nothing half-written is left: the earlier complete outputs (or none) stay in place.
    """


class StageError(GeounetError, RuntimeError):
    """A stage of a job failed; the message names the stage, earlier stages' outputs are kept."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class GeounetWarning(UserWarning):
    """Base class of geounet's warnings."""


class NotGeoreferencedWarning(GeounetWarning):
    """A dataset has no georeferencing; results may not land on a map."""


class ReprojectionWarning(GeounetWarning):
    """Data was reprojected to the scene CRS on the fly."""


class JobCheckError(ConfigError):
    """A job failed its checks before its first stage ran; ``problems`` lists each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{source}: {len(problems)} problem(s) found before any stage ran:\n{listed}"
        )
        self.problems = list(problems)


class FolderLockedError(OutputError):
    """Another live geounet run holds the output folder's lock."""


class ResolutionMismatchError(GeounetError, ValueError):
    """A scene's pixel size (or its CRS units) differs too much from the model's training data."""


class ReferenceClassError(LabelError):
    """A reference holds a class that the prediction's class scheme lacks."""


class LabelWarning(GeounetWarning):
    """Labels that tile but train a misleading model, e.g. only one class labelled."""
