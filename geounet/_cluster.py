"""The dask side of :mod:`geounet.distributed`: the client, the model plugin and the tasks.

This module imports ``distributed`` at the top, so only :mod:`geounet.distributed` imports it,
inside the functions that need a cluster (``geounet predict`` on one scene never loads dask).
The tasks run the very functions a single-process run calls (:func:`predict_scene`,
:func:`tile_scene`), so a scene's outputs do not depend on where it ran.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from geounet.errors import ConfigError

log = logging.getLogger(__name__)

_MODELS: dict[str, tuple[Any, Any]] = {}
"""Per worker process: plugin name -> (model, metadata), filled by :class:`ModelPlugin`."""

# Worker processes of a local cluster keep quiet: their per-chip bars would interleave with the
# client's per-scene bar on the same terminal.
_LOCAL_WORKER_ENV = {"TQDM_DISABLE": "1"}


class ModelPlugin(WorkerPlugin):
    """Loads a model once per worker process and keeps it for every scene that worker predicts.

    The scheduler keeps registered plugins and runs them on every worker that joins later, so a
    worker restarted after a crash gets the model too. A model file travels as its bytes and is
    read with :func:`~geounet.modelfile.load_model_file` (safetensors, never a pickle); an
    in-memory ``(module, metadata)`` pair travels pickled, like any dask task argument.
    """

    idempotent = True  # the name holds the model's digest: registering it again is a no-op

    def __init__(
        self,
        name: str,
        *,
        payload: bytes | None = None,
        source: str = "the model file",
        module: tuple[Any, Any] | None = None,
        torch_threads: int | None = None,
    ) -> None:
        self.name = name
        self.payload = payload
        self.source = source
        self.module = module
        self.torch_threads = torch_threads

    def setup(self, worker: Any) -> None:
        """Load the model into this worker's cache (and pin its torch thread count)."""
        import torch

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        if self.payload is not None:
            from geounet.errors import GeounetError  # noqa: PLC0415
            from geounet.modelfile import load_model_file  # noqa: PLC0415

            with tempfile.TemporaryDirectory(dir=worker.local_directory) as tmp:
                path = Path(tmp) / "model.safetensors"
                path.write_bytes(self.payload)
                try:
                    loaded = load_model_file(path)
                except GeounetError as exc:  # name the user's file, not the worker's copy
                    raise type(exc)(str(exc).replace(str(path), self.source)) from None
            _MODELS[self.name] = (loaded.model, loaded.metadata)
            self.payload = None  # the worker's copy of the plugin need not hold the bytes too
        elif self.module is not None:
            _MODELS[self.name] = self.module

    def teardown(self, worker: Any) -> None:
        """Drop the model from this worker's cache."""
        _MODELS.pop(self.name, None)


def predict_task(
    model_key: str, paths: Sequence[str], out_dir: str, options: Any
) -> dict[str, Any]:
    """One scene through :func:`~geounet.inference.predict_scene` with the worker's model."""
    from geounet.inference import predict_scene  # noqa: PLC0415

    start = time.perf_counter()
    try:
        model, metadata = _MODELS[model_key]
    except KeyError:
        raise RuntimeError(
            f"worker {get_worker().address} has no model {model_key}: its plugin did not load; "
            "see the worker's log."
        ) from None
    result = predict_scene(model, list(paths), out_dir, metadata=metadata, options=options)
    outputs = {"classes": result.classes, "qml": result.qml, "preview": result.preview}
    if result.probabilities is not None:
        outputs["probabilities"] = result.probabilities
    return {
        "seconds": time.perf_counter() - start,
        "outputs": {k: str(v) for k, v in outputs.items()},
    }


def tile_task(paths: Sequence[str], out_dir: str, tile_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """One scene through :func:`~geounet.tiling.tile_scene`."""
    from geounet.tiling import tile_scene  # noqa: PLC0415

    start = time.perf_counter()
    result = tile_scene(list(paths), out_dir, **tile_kwargs)
    out = Path(result.out_dir)
    return {
        "seconds": time.perf_counter() - start,
        "outputs": {"chips": str(out), "index": str(out / "index.gpkg")},
        "chips_written": result.chips_written,
        "split_counts": dict(result.split_counts),
    }


@contextmanager
def open_client(
    scheduler: str | Client | None, workers: int, threads_per_worker: int
) -> Iterator[Client]:
    """A client of ``scheduler`` (an address or a client), or of a new local cluster."""
    if isinstance(scheduler, Client):
        yield scheduler  # the caller's client: used, not closed
        return
    if scheduler is not None:
        try:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect (30 s)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(
                f"cannot reach a dask scheduler at {scheduler!r} ({exc}); start one with "
                "`dask scheduler` and workers with `dask worker ADDRESS`, or use --workers N "
                "for a local cluster."
            ) from exc
        with client:
            yield client
        return
    log.info("starting a local dask cluster: %d worker processes", workers)
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
            env=_LOCAL_WORKER_ENV,
            # A task's error is reported per scene by the client; the workers need not log it.
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def local_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
