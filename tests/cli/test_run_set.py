"""``geounet run --set``: malformed items are usage errors with a message, not tracebacks."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from geounet.cli.main import cli


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("train.epochs=[5", "is not valid YAML"),
        ("train.epochs=!!python/object/apply:os.system [echo hi]", "never run"),
        ("train.epochs", "expected KEY=VALUE"),
    ],
)
def test_a_bad_set_item_is_a_clear_usage_error(tmp_path, item, expected):
    job = tmp_path / "job.yaml"
    job.write_text("out: out\n")
    result = CliRunner().invoke(cli, ["run", str(job), "--set", item])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "--set" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
