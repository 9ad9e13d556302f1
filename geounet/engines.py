"""Engines: what runs a model on batches of chips, behind one seam (torch or onnxruntime).

An engine maps a float32 batch ``(N, C, H, W)`` to softmax probabilities ``(N, K, H, W)``
(float32). The predict pipeline (reader threads -> batches -> engine -> merger -> writer) is the
same for every engine; only this step differs:

``torch``
    A model file (``.safetensors``) or an ``nn.Module``. The readers normalise each chip with the
    model's mean/std and set nodata pixels to 0 (:attr:`Engine.raw_input` is ``False``).
``onnx``
    An ONNX file written by :func:`geounet.export.export_onnx`. Normalisation and the nodata mask
    are inside its graph, so the readers hand it raw band values with NaN at nodata pixels
    (:attr:`Engine.raw_input` is ``True``). Needs only ``onnxruntime`` and numpy: this module
    imports torch inside the torch engine alone, so ``pip install geounet[onnx]`` without torch can
    predict.

The engine is chosen by the model file's suffix (``.onnx`` -> ``onnx``) or by name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from geounet._metadata import read_metadata_document
from geounet._model_spec import ModelSpec
from geounet.errors import ConfigError, InputFileError, ModelFileError

if TYPE_CHECKING:
    import torch

    from geounet.inference import PredictOptions

log = logging.getLogger(__name__)

EngineName = Literal["auto", "torch", "onnx"]
ENGINES = ("auto", "torch", "onnx")
"""Valid engine names (``auto``: by the model file's suffix)."""

ONNX_SUFFIX = ".onnx"
ONNX_METADATA_KEY = "geounet"
"""Key of geounet's own JSON metadata in an ONNX file's ``metadata_props``."""


class Engine(Protocol):
    """Runs batches of chips through a model.

    Attributes:
        name: ``torch`` or ``onnx``.
        device_type: ``cpu`` or ``cuda`` (the pipeline blends on a thread on a GPU).
        raw_input: ``True``: the engine takes raw band values with NaN at nodata pixels and
            normalises itself; ``False``: normalised values with 0 at nodata pixels.
    """

    name: str
    device_type: str
    raw_input: bool

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, K, H, W)`` float32 of a float32 ``(N, C, H, W)`` batch."""
        ...

    def session(self) -> Any:
        """A context manager around a whole prediction (device settings restored after)."""
        ...


def resolve_engine(model: Any, engine: str) -> Literal["torch", "onnx"]:
    """The engine that runs ``model``: by name, or by the model file's suffix for ``auto``.

    Raises:
        ConfigError: An unknown name, or a name that cannot run this model.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}.")
    is_path = isinstance(model, str | Path)
    is_onnx = is_path and Path(model).suffix.lower() == ONNX_SUFFIX
    if engine == "auto":
        return "onnx" if is_onnx else "torch"
    if engine == "onnx" and not is_onnx:
        what = f"model file {model}" if is_path else "an nn.Module"
        raise ConfigError(
            f"the onnx engine runs .onnx files, not {what}; export it first with "
            "`geounet export MODEL.safetensors --format onnx --out model.onnx`."
        )
    if engine == "torch" and is_onnx:
        raise ConfigError(
            f"{model} is an ONNX file, which the torch engine cannot run; use --engine onnx "
            "(or auto) or give the .safetensors model file."
        )
    return engine  # type: ignore[return-value]


def open_engine(model: Any, metadata: Any, options: PredictOptions) -> tuple[Engine, ModelSpec]:
    """The engine for ``model`` (``options.engine``) and the model's :class:`ModelSpec`.

    Args:
        model: A ``.safetensors`` or ``.onnx`` path, or an ``nn.Module`` (then ``metadata``).
        metadata: Bands, normalisation and classes of an ``nn.Module`` (else ``None``).
        options: Device, TTA, compile and batch settings.

    Raises:
        ConfigError: The engine cannot run the model, or an option does not apply to it.
        InputFileError, ModelFileError: The model file is missing or unreadable.
    """
    name = resolve_engine(model, options.engine)
    if name == "onnx":
        if options.compile:
            raise ConfigError("compile applies to the torch engine only; drop --compile for onnx.")
        engine = OnnxEngine(Path(model), device=options.device, tta=options.tta)
        return engine, engine.spec
    net, spec = _load_torch(model, metadata)
    return TorchEngine(net, options), spec


# --- torch -----------------------------------------------------------------------------------


def _load_torch(model: Any, metadata: Any) -> tuple[torch.nn.Module, ModelSpec]:
    """A model and its spec from a model-file path or a module plus metadata."""
    if isinstance(model, str | Path):
        from geounet.modelfile import load_model_file

        loaded = load_model_file(model)
        return loaded.model, ModelSpec.from_metadata(loaded.metadata)
    if metadata is None:
        raise ConfigError(
            "predicting with an nn.Module needs metadata (bands, normalization, classes); "
            "pass metadata=... or a model file path."
        )
    spec = metadata if isinstance(metadata, ModelSpec) else ModelSpec.from_metadata(metadata)
    return model, spec


def _resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no GPU; use --device cpu.")
    return torch.device(name)


def _dihedral(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of a ``(..., H, W)`` tensor, or its inverse."""
    import torch

    flip, rot = divmod(k, 4)
    if not inverse:
        x = torch.rot90(x, rot, dims=(-2, -1))
        return torch.flip(x, dims=(-1,)) if flip else x
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, -rot, dims=(-2, -1))


_CHANNELS_LAST_DEVICES = {"cuda", "cpu"}
"""Devices whose forward pass runs in the channels_last memory layout."""


class TorchEngine:
    """Runs batches through a torch model on a device: softmax probabilities, optional TTA."""

    name = "torch"
    raw_input = False

    def __init__(self, model: torch.nn.Module, options: PredictOptions) -> None:
        import torch

        self.device = _resolve_device(options.device)
        self.device_type = self.device.type
        self.model = model.eval().to(self.device)
        # channels_last: the faster convolution kernels on a GPU and on a CPU (oneDNN); on a
        # 2-core CPU it took 21 % off a whole predict with the same class map (probabilities
        # differ in the last float bits only, far below the uint8 step of the outputs).
        self.channels_last = self.device.type in _CHANNELS_LAST_DEVICES
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if options.compile:
            self.model = torch.compile(self.model)  # type: ignore[assignment]
        # A compiled model recompiles (tens of seconds) for a new batch size, so the last batch
        # is padded to the full size.
        self.pad_to = options.batch_size if options.compile else None
        self.tta = options.tta

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, K, H, W)`` float32 of a normalised ``(N, C, H, W)`` batch."""
        import torch

        n = len(batch)
        if self.pad_to is not None and n < self.pad_to:
            batch = np.concatenate(
                [batch, np.zeros((self.pad_to - n, *batch.shape[1:]), batch.dtype)]
            )
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        with torch.inference_mode(), autocast:
            if not self.tta:
                probs = self._probs(x)
            else:
                probs = (
                    sum(_dihedral(self._probs(_dihedral(x, k)), k, inverse=True) for k in range(8))
                    / 8.0
                )
        # Back to (N, K, H, W) rows in memory: the merger reads each class plane of a chip.
        return probs[:n].float().cpu().contiguous().numpy()

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        logits = self.model(x)
        if logits.shape[1] == 1:  # binary model: P(class 1) as the second channel
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(logits.float(), dim=1)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Let cuDNN pick the fastest convolution for the fixed chip shape; restored after."""
        if self.device.type != "cuda":
            yield
            return
        import torch

        saved = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = saved


# --- onnxruntime -----------------------------------------------------------------------------


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """Read the geounet metadata (the model file's layout) of an exported ONNX file.

    Raises:
        InputFileError: If the file does not exist.
        ModelFileError: If it is not ONNX or was not exported by geounet.
    """
    session = _onnx_session(Path(path), ["CPUExecutionProvider"])
    return _geounet_metadata(Path(path), session)


def _onnx_session(path: Path, providers: list[str]) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError(
            "the onnx engine needs onnxruntime: `pip install onnxruntime` "
            "(or `pip install geounet[onnx]`)."
        ) from exc
    if not path.is_file():
        raise InputFileError(f"model file {path} does not exist.")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are noise to a user
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelFileError(
            f"onnxruntime cannot load {path}: {exc}. Export ONNX files with `geounet export`."
        ) from exc


def _geounet_metadata(path: Path, session: Any) -> dict[str, Any]:
    return read_metadata_document(
        session.get_modelmeta().custom_metadata_map, ONNX_METADATA_KEY, path,
        f"{path} has no geounet metadata (no {ONNX_METADATA_KEY!r} in metadata_props), so its "
        "bands, normalisation and classes are unknown; export it with `geounet export`.",
    )  # fmt: skip


def _onnx_providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if device.startswith("cuda") and not cuda:
        raise ConfigError(
            "device 'cuda' requested but onnxruntime has no CUDA provider "
            f"(available: {available}); install onnxruntime-gpu or use --device cpu."
        )
    if device == "cpu" or not cuda:
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _dihedral_np(x: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """Numpy twin of :func:`_dihedral` (same order of the 8 flips/rotations)."""
    flip, rot = divmod(k, 4)
    if not inverse:
        x = np.rot90(x, rot, axes=(-2, -1))
        return np.flip(x, axis=-1) if flip else x
    x = np.flip(x, axis=-1) if flip else x
    return np.rot90(x, -rot, axes=(-2, -1))


class OnnxEngine:
    """Runs batches through an exported ONNX graph with onnxruntime (no torch).

    The graph takes raw band values (NaN = nodata) and returns softmax probabilities; its
    geounet metadata gives the bands, classes and chip size (:attr:`spec`).
    """

    name = "onnx"
    raw_input = True

    def __init__(self, path: Path, *, device: str = "auto", tta: bool = False) -> None:
        self.path = path
        providers = _onnx_providers(device)
        self._ort = _onnx_session(path, providers)
        self.device_type = "cuda" if providers[0].startswith("CUDA") else "cpu"
        self.spec = ModelSpec.from_metadata(_geounet_metadata(path, self._ort))
        self.input_name = self._ort.get_inputs()[0].name
        self.tta = tta

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, K, H, W)`` float32 of a raw ``(N, C, H, W)`` batch."""
        if not self.tta:
            return self._probs(batch)
        total = sum(
            _dihedral_np(self._probs(_dihedral_np(batch, k)), k, inverse=True) for k in range(8)
        )
        return np.ascontiguousarray(total / 8.0, dtype=np.float32)

    def _probs(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return np.asarray(self._ort.run(None, feed)[0], dtype=np.float32)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Nothing to set up: onnxruntime sessions keep their own settings."""
        yield
