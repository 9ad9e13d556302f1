"""YAML reading: safe loading and limits (alias bombs, depth, size), and ``--set`` parsing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from geounet.config import (
    MAX_YAML_BYTES,
    load_job_config,
    load_yaml_text,
    parse_override,
    read_yaml,
)
from geounet.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _billion_laughs() -> str:
    """A 9-level nest of 9 aliases each: 485 bytes that expand to 9**10 strings."""
    lines = ["out: x", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_within_a_second_and_200_mb(tmp_path):
    bomb = tmp_path / "job.yaml"
    bomb.write_text(_billion_laughs())
    assert bomb.stat().st_size < 2048
    # A fresh process, so that its peak RSS measures this load alone (plus the imports). Linux
    # carries ru_maxrss over fork/exec from the parent (a pytest session at 1.4 GB), so the
    # getrusage figure is taken as the growth during the load, and /proc's VmHWM (reset by
    # exec) gives the process's own peak.
    script = textwrap.dedent(
        f"""
        import json, resource, time
        from geounet.config import load_job_config
        from geounet.errors import ConfigError
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            load_job_config({str(bomb)!r})
            message = None
        except ConfigError as exc:
            message = str(exc)
        seconds = time.perf_counter() - start
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
        print(json.dumps({{"message": message, "seconds": seconds, "grown_mb": grown_mb,
                          "peak_mb": int(status) / 1024}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["message"] is not None and "aliases are expanded" in result["message"]
    assert str(bomb) in result["message"]
    assert result["seconds"] < 1.0
    assert result["grown_mb"] < 200 and result["peak_mb"] < 200, result


def test_reasonable_aliases_still_work_and_limits_name_the_problem(tmp_path):
    doc = "base: &b {epochs: 3, lr: 0.01}\ntrain: *b\nalso: *b\n"
    assert load_yaml_text(doc, "t")["train"] == {"epochs": 3, "lr": 0.01}
    with pytest.raises(ConfigError, match="nesting deeper"):
        load_yaml_text("[" * 200 + "]" * 200, "deep.yaml")
    with pytest.raises(ConfigError, match="more than 1000 aliases"):
        load_yaml_text("a: &a 1\nb: [" + ",".join(["*a"] * 1001) + "]", "many.yaml")
    with pytest.raises(ConfigError, match="refers to itself"):
        load_yaml_text("a: &a [*a]", "cycle.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * MAX_YAML_BYTES)
    with pytest.raises(ConfigError, match=r"big\.yaml is .* bytes"):
        read_yaml(big)


def test_python_tags_are_never_constructed(tmp_path):
    marker = tmp_path / "ran"
    job = tmp_path / "job.yaml"
    job.write_text(f"out: x\nx: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n")
    with pytest.raises(ConfigError, match="tags such as !!python"):
        load_job_config(job)
    assert not marker.exists()


def test_set_items_parse_as_yaml_values_or_give_clear_errors(tmp_path):
    assert parse_override("train.epochs=5") == ("train.epochs", 5)
    assert parse_override("predict.device=cuda") == ("predict.device", "cuda")
    assert parse_override("tile.bands=[B02, B03]") == ("tile.bands", ["B02", "B03"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train.epochs")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train..epochs=5")
    with pytest.raises(ConfigError, match=r"--set 'train.epochs=\[5' is not valid YAML"):
        parse_override("train.epochs=[5")
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError, match="never run"):
        parse_override(f"train.epochs=!!python/object/apply:pathlib.Path.touch [{str(marker)!r}]")
    assert not marker.exists()
