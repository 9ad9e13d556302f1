"""The many-scenes options shared by ``geounet predict`` and ``geounet tile`` (dask runs)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

SCENES_HELP = (
    "Many scenes instead of SCENE, each into DIR/<scene-stem>/ as a dask task: a .txt list "
    "(one scene per line; several paths on a line are the band files of one scene; paths "
    "relative to the list), a quoted glob ('scenes/*.tif', each match one scene) or one "
    "raster/VRT. Repeatable."
)


@dataclass(frozen=True)
class ScenesFlags:
    """The values of the many-scenes options."""

    scenes: tuple[str, ...]
    workers: int | None
    scheduler: str | None
    retries: int

    def cluster(self) -> Any:
        """The :class:`~geounet.distributed.ClusterOptions` these flags ask for."""
        # dask logs every scheduler, nanny and client event at INFO, the CLI's default level:
        # noise for users, who see each scene's outcome from geounet. -v shows it again. The
        # import first: importing distributed sets its loggers' levels from the dask config.
        import distributed  # noqa: F401

        from geounet.distributed import ClusterOptions

        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            logging.getLogger("distributed").setLevel(logging.WARNING)

        return ClusterOptions(workers=self.workers, scheduler=self.scheduler, retries=self.retries)


def scenes_options(*worker_flags: str, gpu: bool = False) -> Callable[[F], F]:
    """Add ``--scenes``, the worker count (under ``worker_flags``), ``--scheduler``, ``--retries``.

    The worker count arrives as the ``dask_workers`` parameter; ``gpu`` notes its GPU default.
    """
    gpu_note = "; 1 when predicting on a GPU" if gpu else ""

    def decorate(fn: F) -> F:
        options = [
            click.option("--scenes", multiple=True, metavar="LIST|GLOB|FILE", help=SCENES_HELP),
            click.option(
                *worker_flags,
                "dask_workers",
                type=click.IntRange(min=1),
                help="With --scenes: worker processes of a local dask cluster.  [default: one "
                f"per CPU, at most one per scene{gpu_note}]",
            ),
            click.option(
                "--scheduler",
                metavar="ADDRESS",
                help="With --scenes: a running dask scheduler (e.g. tcp://10.0.0.5:8786, from "
                "`dask scheduler`) instead of a local cluster.",
            ),
            click.option(
                "--retries",
                type=click.IntRange(min=0),
                default=1,
                help="With --scenes: times a scene whose task failed is run again.",
            ),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def check_scene_mode(scene: tuple[str, ...], flags: ScenesFlags, *, required: bool) -> None:
    """Refuse ambiguous combinations of SCENE, ``--scenes`` and the cluster options."""
    if flags.scenes and scene:
        raise click.UsageError(
            "give SCENE (one scene, maybe as several band files) or --scenes (many scenes), not "
            "both. A shell glob such as --scenes dir/*.tif expands into several arguments: quote "
            "it, --scenes 'dir/*.tif'."
        )
    if required and not flags.scenes and not scene:
        raise click.UsageError("give a SCENE, or --scenes for many scenes.")
    if not flags.scenes and (flags.workers is not None or flags.scheduler is not None):
        raise click.UsageError("the dask options (workers, --scheduler) need --scenes.")
    if flags.workers is not None and flags.scheduler is not None:
        raise click.UsageError(
            "give the number of local workers or --scheduler (a running cluster), not both."
        )


def report_scenes(result: Any, verb: str) -> None:
    """Echo a :class:`~geounet.distributed.ScenesResult`; fail (exit 1) naming failed scenes."""
    total, failed = len(result.runs), result.failed
    click.echo(
        f"{verb} {total - len(failed)} of {total} scenes into {result.out_dir} in "
        f"{result.seconds:.1f} s; summary in {result.summary}"
    )
    if failed:
        lines = "\n".join(f"  {r.name} ({', '.join(r.paths)}): {r.error}" for r in failed)
        raise click.ClickException(
            f"{len(failed)} of {total} scenes failed (tracebacks in {result.summary}); the other "
            f"scenes' outputs are complete:\n{lines}"
        )
