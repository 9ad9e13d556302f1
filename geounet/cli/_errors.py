"""Turn library errors into clean CLI errors (no traceback for expected failures)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click

from geounet.errors import GeounetError

T = TypeVar("T")
log = logging.getLogger("geounet.cli")


@contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise :class:`GeounetError` as :class:`click.ClickException` (exit status 1).

    The user sees the message only; ``geounet -v`` (debug) also logs the traceback.
    """
    try:
        yield
    except GeounetError as exc:
        log.debug("traceback of the error below", exc_info=True)
        raise click.ClickException(str(exc)) from exc


def guarded(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator form of :func:`user_errors`."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        with user_errors():
            return fn(*args, **kwargs)

    return wrapper
