"""One run per output folder: a second `geounet run` fails at once naming the holder."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_job import write_job

from geounet._lock import LOCK_FILE, folder_lock
from geounet.errors import FolderLockedError

REPO = Path(__file__).resolve().parents[1]
GEOUNET = str(Path(sys.executable).with_name("geounet"))  # the console script

HOLDER = """
import sys
from geounet._lock import folder_lock
with folder_lock(sys.argv[1], command="holder-test " + sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()  # hold until told (or killed)
"""


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _start_holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_geounet_run_into_a_held_folder_fails_at_once_naming_the_holder(tmp_path):
    job = write_job(tmp_path)
    out = tmp_path / "job"
    holder = _start_holder(out)
    try:
        start = time.perf_counter()
        second = subprocess.run(
            [GEOUNET, "run", str(job)],
            capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert second.returncode == 1, second.stderr
        message = second.stderr
        assert f"{out} is in use by pid {holder.pid} on host {socket.gethostname()}" in message
        assert f"holder-test {out}" in message and "started 20" in message
        assert "Traceback" not in message
        assert not (out / "tile").exists()  # nothing of the second run was written
        assert time.perf_counter() - start < 20  # refused at start-up, not after a stage
        info = json.loads((out / LOCK_FILE).read_text())
        assert info["pid"] == holder.pid
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert not (out / LOCK_FILE).exists()  # a clean exit leaves no lock file


def test_the_lock_of_a_killed_run_is_taken_over_with_a_log_line(tmp_path, caplog):
    folder = tmp_path / "out"
    holder = _start_holder(folder)
    with pytest.raises(FolderLockedError, match=f"pid {holder.pid}"):
        with folder_lock(folder):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (folder / LOCK_FILE).exists()  # a killed holder cannot clean up
    with caplog.at_level(logging.WARNING, logger="geounet._lock"):
        with folder_lock(folder, command="next") as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock of {folder}" in caplog.text
    assert f"pid {holder.pid}" in caplog.text and "dead" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geounet._lock"), folder_lock(folder):
        pass
    assert "stale" not in caplog.text  # released cleanly last time


def test_a_stage_command_locks_beside_the_folder_it_replaces(tmp_path):
    folder = tmp_path / "chips"
    with folder_lock(folder, beside=True) as path:
        assert path == tmp_path / f".chips{LOCK_FILE}"
        assert not folder.exists()  # the stage creates (and swaps in) the folder itself
        with pytest.raises(FolderLockedError, match=f"{folder} is in use by pid {os.getpid()}"):
            with folder_lock(folder, beside=True):
                pass
    assert not path.exists()
