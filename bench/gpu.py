"""GPU benchmark of prediction: model-only, decode-only and end-to-end megapixels per second.

One prepared script for a lent GPU host (one H100, 16 cores, a strict 10-minute limit); without
a GPU it runs the same steps on the CPU at a smaller size. Steps, in order of importance; each
is warmed up, timed with ``torch.cuda.synchronize`` on a GPU, and may fail (or be skipped when
the time budget runs out) without stopping the others:

1. ``scene``: generate (or reuse) a SIZE^2 13-band uint16 tiled GeoTIFF (512 px blocks, DEFLATE
   or ZSTD with predictor 2), strips computed by a thread pool, compressed by GDAL threads.
2. ``decode``: predict's own reader path (``geounet.inference._iter_batches``: N reader threads,
   window reads, normalisation, batching) over every chip of the scene's grid, no model.
3. ``model``: forward passes of chips already on the device: the registry's default ``unet``
   (depth 4, base 64, 31 M parameters) and ``unet_large`` (base 128, 124 M): fp32 eager,
   bf16 autocast + channels_last eager, and the same compiled (``torch.compile``).
4. ``forward``: predict's torch engine, ``geounet.engines.TorchEngine`` (pinned host batch -> device, model, softmax, back to
   host): how much the copies cost over the model.
5. ``e2e``: ``predict_scene`` on the scene with a saved model file (eager), then with
   ``compile=True``; each after a warm-up run on a small scene. ``e2e_null`` runs it with a
   1x1 convolution instead of the U-Net: the ceiling of the pipeline itself (decode, stitch,
   write). The seconds spent in the model call, the merger, the writer queue and ``_publish``
   (COG, overviews, preview; included in the end-to-end time) are reported per run.

All rates are in *scene* megapixels/s. The grid's chips overlap, so a model that does C chip
megapixels/s predicts at most ``C * scene_px / (chips * chip^2)`` scene megapixels/s: that is
the model ceiling the ratios use. Printed ratios: end-to-end / model-only and end-to-end /
min(model-only, decode-only); target >= 0.8 of the lower ceiling.

Run (GPU host)::

    python bench/gpu.py --out "$OUT/gpu_bench.json"

CPU smoke run: ``python bench/gpu.py --size 1024`` (the default without a GPU). Results go to
``--out``, else ``$OUT/gpu_bench.json`` when ``$OUT`` is set, else ``WORKDIR/gpu_bench.json``;
the file is rewritten after every step, so a killed run keeps what it measured.

Needs torch, numpy, rasterio; safetensors for the model-file step (else the e2e step predicts
from the module); tqdm and Pillow are replaced by no-op stand-ins when missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import sys
import time
import traceback
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

try:
    import geounet  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BANDS = tuple(f"B{i:02d}" for i in range(1, 14))
MEAN, STD = 1500.0, 500.0
BLOCK = 512
MODELS = {
    "unet": {},  # the registry's defaults: depth 4, base 64
    "unet_large": {"base_channels": 128},
}


def log(msg: str) -> None:
    print(msg, flush=True)


# -- environment ------------------------------------------------------------------------------


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def shim_missing() -> list[str]:
    """No-op stand-ins for tqdm and Pillow when they are not installed (predict imports them)."""
    shimmed = []
    if not importable("tqdm.auto"):

        class _Bar:
            def __init__(self, *args, **kwargs) -> None:
                pass

            def update(self, n: int = 1) -> None:
                pass

            def close(self) -> None:
                pass

        tqdm_mod, auto = types.ModuleType("tqdm"), types.ModuleType("tqdm.auto")
        tqdm_mod.tqdm = auto.tqdm = _Bar
        tqdm_mod.auto = auto
        sys.modules.update({"tqdm": tqdm_mod, "tqdm.auto": auto})
        shimmed.append("tqdm")
    if not importable("PIL.Image"):

        class _Image:
            @staticmethod
            def fromarray(*args, **kwargs):
                return _Image()

            def save(self, path) -> None:
                Path(path).write_bytes(b"")  # the preview is skipped, the file must exist

        pil, image = types.ModuleType("PIL"), types.ModuleType("PIL.Image")
        image.fromarray = _Image.fromarray
        pil.Image = image
        sys.modules.update({"PIL": pil, "PIL.Image": image})
        shimmed.append("PIL")
    return shimmed


def environment(cuda: bool) -> dict:
    import rasterio
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "safetensors": importable("safetensors"),
    }
    if cuda:
        env["cuda"] = torch.version.cuda
        env["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    return env


# -- scene ------------------------------------------------------------------------------------


def _strip(r0: int, rows: int, width: int) -> np.ndarray:
    """13 bands of smooth structure plus noise for rows r0..r0+rows (deterministic per strip)."""
    rng = np.random.default_rng(r0)
    rr = np.cos(np.arange(r0, r0 + rows, dtype=np.float32) / 131.0)
    cc = np.sin(np.arange(width, dtype=np.float32) / 97.0)
    base = 1500.0 + 800.0 * np.outer(rr, cc)
    out = np.empty((13, rows, width), np.uint16)
    for b in range(13):
        noise = rng.integers(-64, 64, size=(rows, width), dtype=np.int16)
        out[b] = np.clip(base * (0.6 + 0.05 * b) + noise, 0, 65535)
    return out


def make_scene(path: Path, size: int, compress: str) -> tuple[Path, float]:
    """A ``size^2`` 13-band uint16 tiled GeoTIFF (cached); returns it and the seconds spent."""
    import rasterio
    from affine import Affine

    if path.exists():
        return path, 0.0
    t0 = time.perf_counter()
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 13, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(10, 0, 300000, 0, -10, 5900000),
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": compress,
        "predictor": 2, "num_threads": "all_cpus", "bigtiff": "if_safer",
    }  # fmt: skip
    tmp = path.with_suffix(".partial.tif")
    starts = range(0, size, BLOCK)
    with (
        rasterio.Env(GDAL_CACHEMAX=2048 * 1024**2),
        rasterio.open(tmp, "w", **profile) as dst,
        ThreadPoolExecutor(os.cpu_count() or 2) as pool,
    ):
        dst.descriptions = BANDS
        for r0, block in zip(
            starts, pool.map(lambda r: _strip(r, min(BLOCK, size - r), size), starts), strict=True
        ):
            dst.write(block, window=((r0, r0 + block.shape[1]), (0, size)))
    tmp.rename(path)
    return path, time.perf_counter() - t0


def model_spec(chip: int):
    from geounet.classes import ClassScheme
    from geounet.inference import ModelSpec

    return ModelSpec(BANDS, np.full(13, MEAN, np.float32), np.full(13, STD, np.float32),
                     ClassScheme.default(), chip)  # fmt: skip


# -- timing -----------------------------------------------------------------------------------


class Timer:
    """Seconds per call of ``fn`` after a warm-up, measured over enough calls to fill min_s."""

    def __init__(self, cuda: bool) -> None:
        import torch

        self.sync = torch.cuda.synchronize if cuda else (lambda: None)

    def per_call(self, fn, *, warmup: int, min_s: float) -> tuple[float, int, float]:
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        self.sync()
        first = time.perf_counter() - t0  # includes compilation when compiled
        t0 = time.perf_counter()
        fn()
        self.sync()
        one = time.perf_counter() - t0
        n = max(2, min(200, int(min_s / max(one, 1e-6))))
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        self.sync()
        return (time.perf_counter() - t0) / n, n, first


def build_model(name: str):
    import torch

    from geounet.models import create_model

    torch.manual_seed(0)
    return create_model("unet", in_channels=13, num_classes=4, **MODELS[name]).eval()


def cached_model(ctx: dict, name: str):
    if name not in ctx["models"]:
        ctx["models"][name] = build_model(name)
    return ctx["models"][name]


# -- steps ------------------------------------------------------------------------------------


def step_decode(ctx: dict) -> dict:
    import rasterio

    from geounet.inference import PredictOptions, _iter_batches
    from geounet.raster import GDAL_ENV, open_scene

    info = open_scene(ctx["scene"])
    options = PredictOptions(batch_size=ctx["batch"], readers=ctx["readers"])
    chips = list(ctx["grid"])
    with rasterio.Env(**GDAL_ENV):
        for _ in _iter_batches(info, ctx["spec"], chips[: 2 * ctx["readers"]], options):
            pass  # warm-up: thread pool, dataset handles, page cache
        t0 = time.perf_counter()
        n = 0
        for batch, _, _ in _iter_batches(info, ctx["spec"], chips, options):
            n += len(batch)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "chips": n, "readers": ctx["readers"],
            "scene_mp_s": ctx["scene_mp"] / seconds}  # fmt: skip


def step_model(ctx: dict, name: str, mode: str) -> dict:
    import torch

    cuda, chip, batch = ctx["cuda"], ctx["chip"], ctx["batch"]
    device = torch.device("cuda" if cuda else "cpu")
    model = cached_model(ctx, name).to(device)
    fast = mode != "fp32"
    x = torch.randn(batch, 13, chip, chip, device=device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        model = model.to(memory_format=torch.contiguous_format)
    run = torch.compile(model) if mode == "compiled" else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and fast)

    def call() -> None:
        with torch.inference_mode(), autocast:
            run(x)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    per_call, n, first = ctx["timer"].per_call(call, warmup=3 if cuda else 1, min_s=ctx["min_s"])
    chip_mp_s = batch * chip * chip / 1e6 / per_call
    out = {
        "model": name, "mode": mode, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "batch": batch, "calls": n, "warmup_s": first, "chip_mp_s": chip_mp_s,
        "scene_mp_s": chip_mp_s * ctx["overlap_factor"],
    }  # fmt: skip
    if cuda:
        out["peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def step_forward(ctx: dict, compiled: bool) -> dict:
    """predict's torch engine from a host batch: H2D (pinned), model, softmax, D2H."""
    from geounet.engines import TorchEngine
    from geounet.inference import PredictOptions

    model = cached_model(ctx, "unet")
    device = "cuda" if ctx["cuda"] else "cpu"
    options = PredictOptions(batch_size=ctx["batch"], compile=compiled, device=device)
    forward = TorchEngine(model, options)
    rng = np.random.default_rng(0)
    host = rng.standard_normal((ctx["batch"], 13, ctx["chip"], ctx["chip"]), dtype=np.float32)
    per_call, n, first = ctx["timer"].per_call(
        lambda: forward(host), warmup=3 if ctx["cuda"] else 1, min_s=ctx["min_s"]
    )
    chip_mp_s = ctx["batch"] * ctx["chip"] ** 2 / 1e6 / per_call
    return {"compiled": compiled, "calls": n, "warmup_s": first, "chip_mp_s": chip_mp_s,
            "scene_mp_s": chip_mp_s * ctx["overlap_factor"]}  # fmt: skip


def save_model_file(ctx: dict) -> Path:
    from geounet import modelfile
    from geounet.classes import ClassScheme
    from geounet.data import Normalization
    from geounet.models import describe_model

    model = build_model("unet")
    metadata = modelfile.ModelMetadata(
        architecture=describe_model(model),
        bands=BANDS,
        normalization=Normalization((MEAN,) * 13, (STD,) * 13),
        classes=ClassScheme.default(),
        chip_size=ctx["chip"],
        res=(10.0, 10.0),
        crs_hint="EPSG:32633",
        training={"note": "random weights (bench/gpu.py)"},
    )
    return modelfile.save_model_file(ctx["work"] / "model.safetensors", model, metadata)


@contextlib.contextmanager
def instrumented(record: dict):
    """Add up the seconds predict_scene spends in its stages (main thread unless noted).

    ``forward_s``: batches through the model (copies, compute, softmax, back to host);
    ``merge_s``: blending chips into strips; ``put_s``: waiting for the writer thread's queue
    (writer-bound when large); ``publish_s``: COG, overviews, preview after the pipeline. The
    rest of the pipeline time is waiting for reader threads (decode-bound) and batching.
    """
    from geounet import engines, inference, stitching

    patches = [
        (engines.TorchEngine, "__call__", "forward_s"),
        (stitching.BlendMerger, "add", "merge_s"),
        (inference._StripWriter, "put", "put_s"),
        (inference, "_publish", "publish_s"),
    ]
    originals = [getattr(owner, attr) for owner, attr, _ in patches]

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                record[key] = record.get(key, 0.0) + time.perf_counter() - t0

        return wrapper

    for (owner, attr, key), fn in zip(patches, originals, strict=True):
        setattr(owner, attr, timed(fn, key))
    try:
        yield
    finally:
        for (owner, attr, _), fn in zip(patches, originals, strict=True):
            setattr(owner, attr, fn)


def step_e2e(ctx: dict, compiled: bool, null: bool = False) -> dict:
    """predict_scene on the scene; ``null``: a 1x1 convolution, i.e. the pipeline without a model."""
    import torch

    from geounet.inference import PredictOptions, predict_scene

    options = PredictOptions(
        chip_size=ctx["chip"], overlap=ctx["overlap"], batch_size=ctx["batch"],
        device="cuda" if ctx["cuda"] else "cpu", readers=ctx["readers"], compile=compiled,
    )  # fmt: skip
    out: dict = {"compiled": compiled}
    if null:
        torch.manual_seed(0)
        model, kwargs = torch.nn.Conv2d(13, 4, 1).eval(), {"metadata": ctx["spec"]}
        out["source"] = "1x1 convolution (no U-Net)"
    elif not compiled and ctx.get("model_file"):
        model, kwargs = ctx["model_file"], {}
        out["source"] = "model file"
    else:
        # The same module object in warm-up and timed run, so the compiled code is reused.
        if ctx.get("model_file"):
            from geounet.modelfile import load_model_file

            loaded = load_model_file(ctx["model_file"])
            model, kwargs = loaded.model, {"metadata": loaded.metadata}
            out["source"] = "module loaded from the model file"
        else:
            model, kwargs = build_model("unet"), {"metadata": ctx["spec"]}
            out["source"] = "module (no model file)"
    t0 = time.perf_counter()
    predict_scene(model, ctx["warm_scene"], ctx["work"] / "pred_warm", options=options, **kwargs)
    out["warmup_s"] = time.perf_counter() - t0
    record: dict = {}
    with instrumented(record):
        t0 = time.perf_counter()
        predict_scene(model, ctx["scene"], ctx["work"] / "pred", options=options, **kwargs)
        seconds = time.perf_counter() - t0
    out.update(seconds=seconds, **record)
    out["scene_mp_s"] = ctx["scene_mp"] / seconds
    out["pipeline_scene_mp_s"] = ctx["scene_mp"] / (seconds - record.get("publish_s", 0.0))
    return out


# -- driver -----------------------------------------------------------------------------------


class Results:
    """Collects step results, prints them and rewrites the JSON file after every step."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.path, self.deadline = path, deadline
        self.data: dict = {"steps": {}}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self, name: str, fn, *, need_s: float = 0.0) -> dict | None:
        if self.left() < need_s:
            log(f"[skip] {name}: {self.left():.0f} s left, needs ~{need_s:.0f} s")
            self.data["steps"][name] = {"skipped": f"time budget ({self.left():.0f} s left)"}
            self.save()
            return None
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # report and go on with the next step
            log(f"[fail] {name}: {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=4)
            self.data["steps"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            result = None
        else:
            result["step_s"] = time.perf_counter() - t0
            self.data["steps"][name] = result
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
            log(f"[ok] {name}: {shown}")
        self.save()
        return result

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        tmp.replace(self.path)


def parse_args(argv: list[str] | None, cuda: bool) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192 if cuda else 1024, help="scene side, px")
    p.add_argument("--chip", type=int, default=512 if cuda else 256, help="chip side, px")
    p.add_argument("--overlap", type=int, default=64 if cuda else 32, help="chip overlap, px")
    p.add_argument("--batch", type=int, default=16 if cuda else 2, help="chips per forward")
    p.add_argument("--readers", type=int, default=os.cpu_count() or 2, help="reader threads")
    p.add_argument("--compress", choices=["deflate", "zstd"], default="deflate")
    p.add_argument(
        "--models", default="unet,unet_large" if cuda else "unet",
        help=f"comma-separated, from {sorted(MODELS)}",
    )  # fmt: skip
    p.add_argument(
        "--modes", default="bf16,compiled,fp32" if cuda else "fp32",
        help="comma-separated model-only modes: fp32, bf16 (+channels_last), compiled",
    )  # fmt: skip
    p.add_argument("--no-compile", action="store_true", help="skip every compiled step")
    p.add_argument("--min-s", type=float, default=2.0 if cuda else 3.0, help="timing per step")
    p.add_argument("--budget-s", type=float, default=540.0, help="stop starting steps after")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/geounet-gpu-bench"))
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    return p.parse_args(argv)


def summarize(data: dict) -> None:
    s = data["steps"]

    def rate(name: str) -> float | None:
        r = s.get(name) or {}
        return r.get("scene_mp_s")

    log("\n| measurement | scene MP/s | chip MP/s | seconds in forward / merge / put / publish |")
    log("|---|---:|---:|---|")
    for name, r in s.items():
        if isinstance(r, dict) and "scene_mp_s" in r:
            chip = f"{r['chip_mp_s']:.3g}" if "chip_mp_s" in r else ""
            parts = (
                ""
                if "forward_s" not in r
                else " / ".join(
                    f"{r.get(k, float('nan')):.2f}"
                    for k in ("forward_s", "merge_s", "put_s", "publish_s")
                )
                + f" of {r['seconds']:.2f}"
            )
            log(f"| {name} | {r['scene_mp_s']:.3g} | {chip} | {parts} |")
    decode = rate("decode")
    ratios = {}
    for e2e, model in (("e2e_eager", "model_unet_bf16"), ("e2e_compiled", "model_unet_compiled")):
        if data["cuda"] is False:
            model = "model_unet_fp32"
        e, m = rate(e2e), rate(model)
        if e is None or m is None:
            continue
        lower = min(m, decode) if decode else m
        ratios[e2e] = {
            "vs_model": e / m,
            "vs_lower_ceiling": e / lower,
            "lower_ceiling": "decode" if decode and decode < m else model,
        }
        pipe = s[e2e].get("pipeline_scene_mp_s")
        log(
            f"\n{e2e}: end-to-end / model-only = {e / m:.2f}; end-to-end / min(model-only, "
            f"decode-only) = {e / lower:.2f} (lower ceiling: {ratios[e2e]['lower_ceiling']}, "
            f"{lower:.3g} MP/s; target >= 0.8)"
            + (f"; without the COG step {pipe / lower:.2f}" if pipe else "")
        )
    null = rate("e2e_null")
    if null and decode:
        log(f"\npipeline without a model (1x1 conv) / decode-only = {null / decode:.2f}")
        ratios["e2e_null_vs_decode"] = null / decode
    data["ratios"] = ratios


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    os.environ.setdefault("TQDM_DISABLE", "1")  # predict's progress bar, before tqdm loads
    import torch

    cuda = torch.cuda.is_available()
    args = parse_args(argv, cuda)
    shimmed = shim_missing()
    out = args.out or (
        Path(os.environ["OUT"]) / "gpu_bench.json" if os.environ.get("OUT") else None
    )
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    results = Results(out or work / "gpu_bench.json", start + args.budget_s)
    env = environment(cuda)
    results.data.update(cuda=cuda, env=env, args=vars(args), shimmed=shimmed)
    log(f"geounet GPU bench: {env}\nargs: {vars(args)}; stand-ins for: {shimmed or 'none'}")
    if cuda:
        torch.backends.cudnn.benchmark = True  # as predict_scene does on a GPU

    from geounet.grid import ChipGrid
    from geounet.raster import open_scene

    tag = f"{args.size}_{args.compress}"
    scene = results.run(
        "scene", lambda: dict(zip(("path", "make_s"), make_scene(
            work / f"scene_{tag}.tif", args.size, args.compress), strict=True)),
    )  # fmt: skip
    if scene is None:
        return 1
    warm_size = min(args.size, 2048 if cuda else args.chip)
    warm = results.run(
        "warm_scene",
        lambda: {"path": make_scene(work / f"warm_{warm_size}_{args.compress}.tif",
                                    warm_size, args.compress)[0]},
    )  # fmt: skip
    info = open_scene(scene["path"])
    grid = ChipGrid.from_scene(info, args.chip, args.chip - args.overlap)
    scene_mp = args.size**2 / 1e6
    ctx = {
        "cuda": cuda, "chip": args.chip, "overlap": args.overlap, "batch": args.batch,
        "readers": args.readers, "scene": scene["path"], "grid": grid, "scene_mp": scene_mp,
        "warm_scene": (warm or scene)["path"], "spec": model_spec(args.chip), "work": work,
        "timer": Timer(cuda), "min_s": args.min_s, "models": {},
        # scene pixels per chip pixel: converts chip MP/s into a scene-MP/s ceiling
        "overlap_factor": args.size**2 / (len(grid) * args.chip**2),
    }  # fmt: skip
    results.data["grid"] = {"chips": len(grid), "overlap_factor": ctx["overlap_factor"]}
    log(f"grid: {len(grid)} chips of {args.chip}^2 (overlap {args.overlap}) over {args.size}^2")

    modes = [m for m in args.modes.split(",") if not (args.no_compile and m == "compiled")]
    models = args.models.split(",")
    compile_need = 60.0 if cuda else 240.0
    results.run("decode", lambda: step_decode(ctx), need_s=10)
    first, rest = models[0], models[1:]
    # The default model first (the e2e ratios need it), its slow fp32 figure after the e2e.
    for mode in [m for m in modes if m != "fp32"]:
        need = compile_need if mode == "compiled" else 10
        results.run(f"model_{first}_{mode}", lambda m=mode: step_model(ctx, first, m), need_s=need)
    if not cuda and "fp32" in modes:
        results.run(f"model_{first}_fp32", lambda: step_model(ctx, first, "fp32"), need_s=10)
    results.run("forward_eager", lambda: step_forward(ctx, False), need_s=10)
    if "compiled" in modes:
        results.run("forward_compiled", lambda: step_forward(ctx, True), need_s=20)
    model_file = results.run("model_file", lambda: {"path": save_model_file(ctx)})
    ctx["model_file"] = model_file and model_file["path"]
    e2e_need = 30.0 + 3 * scene_mp / 50
    results.run("e2e_null", lambda: step_e2e(ctx, False, null=True), need_s=e2e_need)
    results.run("e2e_eager", lambda: step_e2e(ctx, False), need_s=e2e_need)
    if "compiled" in modes:
        results.run("e2e_compiled", lambda: step_e2e(ctx, True), need_s=e2e_need + compile_need)
    if cuda and "fp32" in modes:
        results.run(f"model_{first}_fp32", lambda: step_model(ctx, first, "fp32"), need_s=15)
    ctx["models"].clear()
    for name in rest:
        for mode in modes:
            need = compile_need if mode == "compiled" else 15
            results.run(f"model_{name}_{mode}", lambda n=name, m=mode: step_model(ctx, n, m),
                        need_s=need)  # fmt: skip
        ctx["models"].clear()
    summarize(results.data)
    results.data["total_s"] = time.perf_counter() - start
    results.save()
    log(f"\ntotal {results.data['total_s']:.0f} s; results in {results.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
