"""GDAL errors as geounet errors: failed reads name the file, no write error is only logged.

rasterio raises some GDAL failures and only logs others (``GDAL signalled an error`` at INFO,
e.g. "No space left on device" during a COG copy). :func:`gdal_write_errors` collects the
logged ones of the calling thread while a file is written and raises them, so a write never
"succeeds" with a broken file; :func:`reading_errors` turns a failed pixel read into
:class:`RasterReadError`. Used by :mod:`geounet.raster`, the module that opens rasters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geounet._files import output_error, write_errors
from geounet.errors import RasterReadError

# rasterio raises RasterioIOError ("Read failed") with the GDAL error (a CPLE_*Error, not a
# RasterioError) as its cause; both are caught where pixels are read.
_GDAL_ERRORS: tuple[type[BaseException], ...] = (RasterioError, CPLE_BaseError)


@contextmanager
def reading_errors(name: str, window: Window | None = None) -> Iterator[None]:
    """Turn a failed pixel read into :class:`RasterReadError` naming the file and the fix."""
    try:
        yield
    except _GDAL_ERRORS as exc:
        detail = exc.__cause__ or exc
        where = (
            f" (rows {int(window.row_off)}-{int(window.row_off + window.height)}, cols "
            f"{int(window.col_off)}-{int(window.col_off + window.width)})"
            if window
            else ""
        )
        raise RasterReadError(
            f"cannot read the pixels of {name}{where}: {detail}. The file is truncated or "
            "corrupt (an interrupted download or copy?); re-download or re-create it."
        ) from exc


class _FailureLog(logging.Handler):
    """Collects, per thread, the GDAL errors that rasterio logs (at INFO) instead of raising."""

    loggers = ("rasterio._env", "rasterio._err")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.active: dict[int, list[str]] = {}
        self.lock = threading.Lock()
        self.saved_levels: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        messages = self.active.get(record.thread or 0)
        if messages is not None and record.levelno >= logging.INFO:
            text = record.getMessage()
            if "signalled an error" in text or record.levelno >= logging.ERROR:
                messages.append(text)

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        ident, messages = threading.get_ident(), []
        with self.lock:
            if not self.active:  # the first capture enables INFO records; the last restores
                named = [logging.getLogger(n) for n in self.loggers]
                self.saved_levels = [lg.level for lg in named]
                for lg in named:
                    lg.addHandler(self)
                    if not lg.isEnabledFor(logging.INFO):
                        lg.setLevel(logging.INFO)
            self.active[ident] = messages
        try:
            yield messages
        finally:
            with self.lock:
                del self.active[ident]
                if not self.active:
                    for lg, level in zip(
                        (logging.getLogger(n) for n in self.loggers), self.saved_levels, strict=True
                    ):
                        lg.removeHandler(self)
                        lg.setLevel(level)


_FAILURES = _FailureLog()


class _GdalWriteError(OSError):
    """A GDAL error that rasterio logged during a write instead of raising it."""


@contextmanager
def gdal_write_errors(path: str | Path, *, needed_bytes: int | None = None) -> Iterator[None]:
    """Every GDAL error while writing ``path`` raises an :class:`OutputError` naming it.

    Errors rasterio raises are translated; those it only logs (e.g. "No space left on device"
    during a COG copy) are collected and raised when the block ends.
    """
    try:
        with write_errors(path, needed_bytes=needed_bytes):
            with _FAILURES.capture() as failures:
                yield
            if failures:
                raise _GdalWriteError("; ".join(failures))
    except RasterReadError as exc:  # a check of our own output failed: a write problem
        raise output_error(exc, path, needed_bytes=needed_bytes) from exc
