"""Publishing outputs: never a half-written file, never a mix of two runs' files.

:func:`staged_file` writes one file under a temporary name and renames it into place.
:func:`staged_output` is the same for a stage's whole output set: everything is written into a
hidden work folder beside the output folder, and the complete set is swapped in at once (an
atomic ``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, with the old set put
aside under a name the next run restores). A failure or a kill at any byte therefore leaves
the previous complete set, or none, never a mix. Work folders are named after their owner
(``.<out>.work-<pid>@<host>-<random>``), so the next run removes those of dead processes.

:func:`write_errors` turns the ``OSError``/GDAL errors of a write into :class:`OutputError`
or :class:`DiskFullError` naming the file, the space free and needed, and the fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import glob
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from geounet.errors import DiskFullError, GeounetError, OutputError

log = logging.getLogger(__name__)

_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>work|old)-(?P<pid>\d+)@(?P<host>.+)-[0-9a-f]{8}$")
# Temporary names that killed runs (of this and earlier versions: staged_file, .predict-*) left
# inside output folders; they are never carried into a new output set.
_LEFTOVERS = (".predict-*", ".*.partial.tif", ".*.partial", ".*.tmp", ".*.tmp.*")
_NO_SPACE = ("no space left", "disk is full", "disk full", "quota exceeded")


def _owner_tag() -> str:
    return f"{os.getpid()}@{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def _mib(n: float) -> str:
    return f"{n / 1024**2:.1f} MiB"


def _existing_folder(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.is_dir():
            return p
    return Path.cwd()


def _published_name(part: str) -> str:
    match = _STAGING.match(part)
    return match["name"] if match and match["kind"] == "work" else part


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or quota is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(s in str(seen).lower() for s in _NO_SPACE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def output_error(
    exc: BaseException, path: str | os.PathLike[str], *, needed_bytes: int | None = None
) -> OutputError:
    """The :class:`OutputError` (a :class:`DiskFullError` when the disk is full) for ``exc``.

    Args:
        exc: What the write raised (an ``OSError``, a GDAL or SQLite error...).
        path: The file being written.
        needed_bytes: An estimate of the bytes the whole write needs, for the message.
    """
    # Name the file as the user will find it: pred/classes.tif, not .pred.work-123@host-.../.
    target = Path(*(_published_name(part) for part in Path(path).parts))
    folder = _existing_folder(Path(path).parent)
    free = shutil.disk_usage(folder).free
    low = needed_bytes is not None and free < needed_bytes
    if is_no_space(exc) or low:
        need = f"it needs up to about {_mib(needed_bytes)}, " if needed_bytes else ""
        return DiskFullError(
            f"no space left while writing {target}: {need}{_mib(free)} free on the disk of "
            f"{folder}. Free some space or choose an output folder on a larger disk; the "
            "earlier outputs there (if any) were kept."
        )
    return OutputError(f"cannot write {target}: {exc}. Check the folder is writable and retry.")


@contextmanager
def write_errors(
    path: str | os.PathLike[str], *, needed_bytes: int | None = None
) -> Iterator[None]:
    """Raise an :class:`OutputError` / :class:`DiskFullError` for a failed write of ``path``.

    I/O errors (``OSError``, and the errors of GDAL, pyogrio, SQLite and PIL, which do not
    derive from it) become one naming the file; others (GeounetErrors, bugs) pass unchanged.
    """
    try:
        yield
    except GeounetError:
        raise
    except Exception as exc:
        if not _is_io_error(exc):
            raise
        raise output_error(exc, path, needed_bytes=needed_bytes) from exc


_IO_MODULES = ("rasterio", "pyogrio", "sqlite3", "fiona", "PIL")


def _is_io_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return isinstance(exc, OSError) or module.split(".")[0] in _IO_MODULES


@contextmanager
def staged_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place when the block succeeds.

    Readers see the old file or the new one, never a part; a failed write leaves no stray file.
    The temporary name keeps the suffix, so drivers chosen by extension still work.
    """
    out = Path(path)
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.tmp{out.suffix}")
    try:
        yield tmp
        with write_errors(out):
            os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` through :func:`staged_file`; errors name the file (and a full disk)."""
    out = Path(path)
    with staged_file(out) as tmp, write_errors(out, needed_bytes=len(text.encode())):
        tmp.write_text(text)
    return out


@contextmanager
def staged_output(
    out_dir: str | os.PathLike[str], *, owned: Collection[str] | None = None
) -> Iterator[Path]:
    """Write a stage's outputs into a hidden work folder, then publish them as one set.

    On success the work folder replaces ``out_dir`` in one step; on an error (or a kill) the
    previous ``out_dir`` is untouched and the work folder is removed (a killed run's by the
    next run).

    Args:
        out_dir: The output folder (created, with its parents).
        owned: The names of the set when ``out_dir`` may hold other files (e.g. predict's
            ``classes.tif``...): entries not named here are carried into the new set as hard
            links, and an old entry named here that the new set lacks disappears. ``None``: the
            folder is the set, and nothing of the old one is kept.

    Yields:
        The work folder to write into (on the same disk as ``out_dir``).

    Raises:
        OutputError: ``out_dir`` is a file, or its parent cannot be written (before the block
            runs), or the swap failed.
    """
    out = Path(out_dir).absolute()
    if out.is_symlink():  # swap the folder it points to, not the link
        out = out.resolve()
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is a file; give a folder path.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        work = out.parent / f".{out.name}.work-{_owner_tag()}"
        work.mkdir()
    except OSError as exc:
        raise OutputError(
            f"cannot write into {out.parent}: {exc.strerror or exc}; choose another output folder."
        ) from exc
    try:
        yield work
        with write_errors(out):
            if owned is not None and out.is_dir():
                _carry_over(out, work, owned)
            _swap_in(work, out)
    finally:
        # After a swap the work folder holds the old set; otherwise an unpublished new one.
        shutil.rmtree(work, ignore_errors=True)


def _carry_over(old: Path, new: Path, owned: Collection[str]) -> None:
    """Hard-link the old folder's entries that are not part of the set into the new folder."""
    for entry in old.iterdir():
        name = entry.name
        if name in owned or (new / name).exists() or _is_leftover(name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(new / name))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst, follow_symlinks=False)


def _is_leftover(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _LEFTOVERS)


def _swap_in(work: Path, out: Path) -> None:
    """Make ``work`` the new ``out``; the old ``out`` ends at ``work`` (or is removed)."""
    if not out.exists():
        os.rename(work, out)
        return
    if _exchange(work, out):
        return
    # Without an atomic exchange: a kill between the two renames leaves no `out` but the old
    # set aside, which the next run puts back (remove_stale_staging).
    aside = out.parent / f".{out.name}.old-{_owner_tag()}"
    os.rename(out, aside)
    os.rename(work, out)
    shutil.rmtree(aside, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where that is not available."""
    if os.environ.get("GEOUNET_NO_RENAME_EXCHANGE"):  # lets the tests cover the fallback
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # file system or kernel lacks it
        return False
    raise OSError(code, os.strerror(code), str(b))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(out_dir: str | os.PathLike[str]) -> None:
    """Remove the work folders that dead processes on this host left beside ``out_dir``.

    A set put aside by a run killed mid-swap (no ``out_dir`` now) is put back instead. Work
    folders of live processes, and of other hosts (their processes cannot be checked from
    here), are left alone.
    """
    out = Path(out_dir)
    if not out.parent.is_dir():
        return
    host = socket.gethostname()
    for entry in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-*@*")):
        match = _STAGING.match(entry.name)
        if match is None or match["name"] != out.name or match["host"] != host:
            continue
        if _pid_alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not out.exists():
            log.warning("restoring %s, which a killed run had put aside, as %s", entry, out)
            with contextlib.suppress(OSError):
                os.rename(entry, out)
                continue
        log.info("removing %s, left by a run that is no longer running", entry)
        shutil.rmtree(entry, ignore_errors=True)
