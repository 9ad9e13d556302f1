"""One writer per output folder: an advisory lock file with the holder's pid, host and command.

A run takes ``<folder>/.geounet.lock`` (or ``.<folder>.geounet.lock`` beside a folder that is
replaced as a whole when published) with ``fcntl.flock`` (exclusive, non-blocking) and writes
who holds it as JSON. The kernel releases a flock when its holder dies, even by SIGKILL, so a
lock left by a dead run is free: the next run takes it over and logs whose it was. A clean exit
removes the file. A second run that finds the lock held fails at once, naming the holder.

Caveat: ``flock`` is local to a machine on many network file systems (NFS before 4, SMB); two
hosts writing one shared folder are not kept apart there.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geounet.errors import FolderLockedError, OutputError

log = logging.getLogger(__name__)

LOCK_FILE = ".geounet.lock"
"""Name of the lock file inside a locked output folder."""

# Set by the launchers in the processes they start: torchrun (RANK, LOCAL_RANK, GROUP_RANK),
# SLURM's srun (SLURM_PROCID) and Lightning's own DDP launcher (LOCAL_RANK, NODE_RANK).
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "SLURM_PROCID")


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0 of a multi-process run (or the only process).

    Known from the environment before any Trainer exists: only rank 0 clears or locks an output
    folder; the other ranks of the same run write nothing of their own.
    """
    return all(int(os.environ.get(name) or 0) == 0 for name in _RANK_VARIABLES)


def _holder_text(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "a geounet run that is just starting (no holder details yet)"
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, started "
        f"{holder.get('started')} (command: {holder.get('command')})"
    )


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        data = json.loads(os.pread(fd, 65536, 0).decode() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _acquire(path: Path, folder: Path) -> int:
    """An fd holding the flock of ``path``; raises :class:`FolderLockedError` when held."""
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(
                f"cannot create the lock file {path}: {exc.strerror}; check that the folder "
                "is writable, or choose another output folder."
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise FolderLockedError(
                f"{folder} is in use by {_holder_text(holder)}. Wait for that run to "
                "finish (or stop it), or write to another output folder."
            ) from None
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: a file system without flock
            log.warning("cannot lock %s (%s); running without a lock", folder, exc.strerror)
            return fd
        # A releasing holder unlinks the file before closing it: a lock won on that unlinked
        # file guards nothing, so try again on the file now at the path.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def folder_lock(
    folder: str | os.PathLike[str], *, beside: bool = False, command: str | None = None
) -> Iterator[Path]:
    """Hold the lock of an output folder for the duration of a block.

    Args:
        folder: The output folder.
        beside: Keep the lock file beside the folder (``.NAME.geounet.lock`` in its parent,
            which is created) instead of inside it (the folder is created): for stages that
            replace their output folder as a whole when they publish.
        command: What the holder is doing, shown to a second run (default: this process's
            command line).

    Yields:
        The lock file's path.

    Raises:
        FolderLockedError: A live run holds the folder; the message names its pid, host,
            start time and command.
        OutputError: The folder or the lock file cannot be created.
    """
    out = Path(folder)
    home = out.parent if beside else out
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create {home}: {exc.strerror}; choose another output folder."
        ) from exc
    path = home / (f".{out.name}{LOCK_FILE}" if beside else LOCK_FILE)
    fd = _acquire(path, out)
    try:
        stale = _read_holder(fd)
        if stale:
            here = stale.get("host") == socket.gethostname()
            state = "dead" if here and not _pid_alive(stale.get("pid")) else "no longer holding it"
            log.warning("taking over the stale lock of %s: %s", out, f"{_holder_text(stale)}, "
                        f"{state}")  # fmt: skip
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield path
    finally:
        # Unlink while still holding the lock (see _acquire), so a clean exit leaves no file.
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(fd)
