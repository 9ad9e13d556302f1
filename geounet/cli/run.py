"""``geounet run``: a whole job (tile -> train -> predict -> vectorize -> evaluate -> report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geounet.cli._errors import guarded


def _parse_sets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    from geounet.config import parse_override
    from geounet.errors import ConfigError

    overrides: dict[str, Any] = {}
    for item in values:
        try:
            key, value = parse_override(item)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from exc
        overrides[key] = value
    return overrides


@click.command(context_settings={"show_default": True})
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Job folder.  [default: the job file's `out`]",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    callback=_parse_sets,
    metavar="KEY=VALUE",
    help="Override a field, e.g. --set train.epochs=5 --set predict.device=cuda (repeatable).",
)
@click.option("--force", is_flag=True, help="Run every stage, even those that are up to date.")
@guarded
def run(job_file: Path, out: Path | None, overrides: dict[str, Any], force: bool) -> None:
    """Run JOB_FILE: tile, train, predict, vectorize, evaluate, report.

    Each stage writes its own folder under the job folder, beside the resolved job.yaml. A
    stage whose outputs are complete and whose inputs and settings did not change is skipped,
    so a re-run after a failure or an edit starts where it must.
    """
    from geounet.cli._job import echo_job_result, run_job_file

    echo_job_result(run_job_file(job_file, out=out, overrides=overrides, force=force))
