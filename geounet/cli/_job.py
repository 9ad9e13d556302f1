"""What ``geounet run`` and ``geounet demo`` share: loading, running and the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geounet.job import JobResult, StageRun


def run_job_file(
    job_file: Path, *, out: Path | None, overrides: dict[str, Any], force: bool
) -> JobResult:
    """Load a job file with overrides and run it, echoing each stage as it ends."""
    from geounet.config import load_job_config
    from geounet.job import run_job

    job = load_job_config(job_file, out=out, overrides=overrides)
    click.echo(f"job {job.name} -> {job.out}")
    return run_job(job, force=force, on_stage=_echo_stage)


def _echo_stage(run: StageRun) -> None:
    if run.status == "skipped":
        click.echo(f"  {run.name:<10} skipped (up to date)")
    else:
        click.echo(f"  {run.name:<10} done in {run.seconds:.1f} s")
    if run.name == "tile":
        from geounet.cli._logging import tame_lightning

        # Before train imports Lightning, not at start-up: a run refused by the folder lock
        # or the job checks answers without paying for that import.
        tame_lightning()


def echo_job_result(result: JobResult) -> None:
    """Print where the main outputs are and the headline metrics."""
    m = result.metrics
    mean = m.get("mean", {})
    outputs = {s.name: s.outputs for s in result.stages}
    # A job of several scenes keys each scene's outputs as "<scene>/classes".
    for key in [k for k in outputs["predict"] if k.rpartition("/")[2] == "classes"]:
        prefix = key[: -len("classes")]
        click.echo(f"classes:  {outputs['predict'][key]}  (open in QGIS)")
        click.echo(f"polygons: {outputs['vectorize'][prefix + 'polygons']}")
        if prefix + "report" in outputs["report"]:
            click.echo(f"report:   {outputs['report'][prefix + 'report']}")
    if any("/" in k for k in outputs["predict"]) and "report" in outputs["report"]:
        click.echo(f"scenes:   {outputs['report']['report']}  (every scene's scores and report)")
    miou, accuracy = mean.get("iou", float("nan")), m.get("overall_accuracy", float("nan"))
    click.echo(
        f"{m.get('scored', 'reference')}: mIoU {miou:.3f}, overall accuracy {accuracy:.3f}  "
        f"({outputs['evaluate']['metrics']})"
    )
    if m.get("absent_classes"):
        click.echo(f"absent from the reference: {', '.join(m['absent_classes'])} (no score)")
    for warning in m.get("warnings") or []:
        click.echo(f"warning: {warning}")
