"""Publishing outputs as one set (geounet._files): failures, kills and dead runs' leftovers."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from geounet._files import remove_stale_staging, staged_file, staged_output, write_text_atomic
from geounet.errors import OutputError

REPO = Path(__file__).resolve().parents[1]
NAMES = [f"part{i}.txt" for i in range(6)]
LINES = 300

# Publishes generation after generation of a six-file set until it is killed.
PUBLISHER = """
import sys
from pathlib import Path
from geounet._files import staged_output
out, generation = Path(sys.argv[1]), 0
while True:
    generation += 1
    with staged_output(out) as work:
        for name in {names!r}:
            (work / name).write_text(f"{{generation}}\\n" * {lines})
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _check_one_complete_set(out: Path) -> int | None:
    """The generation of the set in ``out`` (None when there is none); fails on any mix."""
    if not out.exists():
        return None
    assert sorted(p.name for p in out.iterdir()) == NAMES, "an incomplete set"
    contents = {(out / n).read_text() for n in NAMES}
    assert len(contents) == 1, "files of two generations in one set"
    text = contents.pop()
    assert text.count("\n") == LINES, "a half-written file"
    return int(text.split("\n", 1)[0])


def test_a_failure_inside_the_block_leaves_the_old_set_and_no_work_folder(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as work:
        (work / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), staged_output(out) as work:
        (work / "a.txt").write_text("new")
        (work / "b.txt").write_text("new")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert (out / "a.txt").read_text() == "old"
    assert _hidden(tmp_path) == []
    with staged_output(out) as work:  # the folder is the set: nothing old survives
        (work / "c.txt").write_text("newer")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]
    assert _hidden(tmp_path) == []


def test_owned_names_are_replaced_as_a_set_and_other_files_are_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "deep.txt").write_text("mine too")
    (out / "classes.tif").write_text("old")
    (out / "probabilities.tif").write_text("old")
    (out / ".predict-abc123").mkdir()  # an old-style work folder of a dead run
    with staged_output(out, owned=("classes.tif", "probabilities.tif")) as work:
        (work / "classes.tif").write_text("new")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["classes.tif", "notes.txt", "sub"]  # old probabilities went with its set
    assert (out / "classes.tif").read_text() == "new"
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "sub" / "deep.txt").read_text() == "mine too"


def test_work_folders_of_dead_processes_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    host = socket.gethostname()
    dead = tmp_path / f".out.work-{_dead_pid()}@{host}-0123abcd"
    alive = tmp_path / f".out.work-{os.getppid()}@{host}-4567cdef"
    elsewhere = tmp_path / ".out.work-1@another-host-89abcdef"
    other_output = tmp_path / f".other.work-{_dead_pid()}@{host}-0123abcd"
    for folder in (dead, alive, elsewhere, other_output):
        folder.mkdir()
        (folder / "classes.tif").write_text("half")
    with staged_output(out) as work:
        (work / "a.txt").write_text("x")
    assert not dead.exists()
    assert alive.exists() and elsewhere.exists() and other_output.exists()


def test_a_set_put_aside_by_a_killed_swap_is_restored(tmp_path):
    out = tmp_path / "out"
    aside = tmp_path / f".out.old-{_dead_pid()}@{socket.gethostname()}-0123abcd"
    aside.mkdir()
    (aside / "a.txt").write_text("previous")
    remove_stale_staging(out)
    assert (out / "a.txt").read_text() == "previous" and not aside.exists()


def test_an_output_that_is_a_file_is_refused_before_work(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(OutputError, match="is a file"), staged_output(tmp_path / "out"):
        pytest.fail("the block must not run")


def test_staged_file_keeps_the_suffix_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "m.json"
    with pytest.raises(RuntimeError), staged_file(target) as tmp:
        assert tmp.suffix == ".json" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    write_text_atomic(target, "{}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_sigkill_at_random_times_leaves_one_complete_set(tmp_path, exchange):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if not exchange:
        env["GEOUNET_NO_RENAME_EXCHANGE"] = "1"
    script = PUBLISHER.format(names=NAMES, lines=LINES)
    rng = random.Random(19)
    generations = []
    for _ in range(8):
        child = subprocess.Popen([sys.executable, "-c", script, str(out)], env=env)
        time.sleep(0.4 + rng.random() * 0.4)  # start-up, then some publishes
        child.send_signal(signal.SIGKILL)
        child.wait()
        if exchange:  # an atomic swap: the folder is always one whole set
            _check_one_complete_set(out)
        remove_stale_staging(out)  # what the next run does first
        generations.append(_check_one_complete_set(out))
        assert _hidden(tmp_path) == []
    assert any(g is not None and g > 1 for g in generations), generations


def test_a_symlinked_output_folder_stays_a_link_to_the_new_set(tmp_path):
    real = tmp_path / "real"
    with staged_output(real) as work:
        (work / "a.txt").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with staged_output(link) as work:
        (work / "a.txt").write_text("new")
    assert link.is_symlink() and (link / "a.txt").read_text() == "new"
    assert _hidden(tmp_path) == []
