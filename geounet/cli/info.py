"""``geounet info MODEL|SCENE|CHIPS``: what a model file, scene or chips folder holds.

Like ``rio info``: a human summary on stdout, or ``--json`` for scripts. A model file shows
its bands (the order a scene must have), classes, chip size, normalisation or input recipe and
training summary; a scene (any path ``geounet predict`` takes: band files, /vsi..., a SAFE or
a STAC item) its CRS, shape, pixel size, bands and nodata; a chips folder its bands, classes,
chip size and the chips per split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from geounet.cli._errors import guarded


def _model_info(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".onnx":
        from geounet.engines import read_onnx_metadata
        from geounet.modelfile import ModelMetadata

        meta = ModelMetadata.from_dict(read_onnx_metadata(path))
    else:
        from geounet.modelfile import read_model_metadata

        meta = read_model_metadata(path)
    return {"kind": "model", "path": str(path), **meta.to_dict()}


def _chips_info(path: Path) -> dict[str, Any]:
    from geounet._chip_index import read_index
    from geounet.data import read_chips_info

    info = read_chips_info(path)
    splits = read_index(path)["split"].value_counts().to_dict()
    return {
        "kind": "chips", "path": str(path), "bands": list(info.bands),
        "classes": info.classes.to_dict(), "chip_size": info.chip_size, "res": list(info.res),
        "crs": info.crs, "normalization": info.normalization.to_dict(),
        "splits": {str(k): int(v) for k, v in sorted(splits.items())},
    }  # fmt: skip


def _scene_info(paths: tuple[str, ...]) -> dict[str, Any]:
    from geounet.raster import open_scene

    scene = open_scene(list(paths) if len(paths) > 1 else paths[0])
    return {"kind": "scene", **scene.to_dict(), "res": list(scene.res),
            "bounds": list(scene.bounds)}  # fmt: skip


def describe(targets: tuple[str, ...]) -> dict[str, Any]:
    """The description ``geounet info`` prints, as a JSON-ready dict."""
    first = Path(targets[0])
    if len(targets) == 1 and first.is_dir() and (first / "index.gpkg").is_file():
        return _chips_info(first)
    if len(targets) == 1 and first.suffix.lower() in (".safetensors", ".onnx"):
        return _model_info(first)
    return _scene_info(targets)


def _classes_text(classes: dict[str, Any]) -> str:
    return ", ".join(f"{c['id']} {c['name']}" for c in classes["classes"])


def _text(d: dict[str, Any]) -> str:
    lines = [f"{d['kind']}: {d.get('path') or d.get('name')}"]
    if d["kind"] == "scene":
        lines += [
            f"  files:     {', '.join(d['paths'])}",
            f"  bands:     {' '.join(d['bands'])} ({d['dtype']})",
            f"  shape:     {d['shape'][0]} x {d['shape'][1]} px, pixel {d['res'][0]:g} x "
            f"{d['res'][1]:g}",
            f"  crs:       {'EPSG:' + str(d['epsg']) if d['epsg'] else d['crs'][:60]}",
            f"  bounds:    {', '.join(f'{v:.10g}' for v in d['bounds'])}",
            f"  nodata:    {d['nodatavals']}" + (" (+ masks)" if any(d["masks"]) else ""),
        ]
        return "\n".join(lines)
    lines += [
        f"  bands:     {' '.join(d['bands'])}",
        f"  classes:   {_classes_text(d['classes'])}",
        f"  chip size: {d['chip_size']} px, pixel {d['res'][0]:g} x {d['res'][1]:g}",
    ]
    if d["kind"] == "chips":
        lines.append(f"  crs:       {d['crs']}")
        lines.append("  chips:     " + ", ".join(f"{k} {v}" for k, v in d["splits"].items()))
        return "\n".join(lines)
    arch = d["architecture"]
    options = json.dumps(arch.get("options", {}))
    model = f"{arch['name']} ({arch['in_channels']} in, {arch['num_classes']} out) {options}"
    lines.insert(1, f"  model:     {model}")
    if d.get("recipe"):
        lines.append(f"  input:     recipe {json.dumps(d['recipe'])}")
    else:
        norm = d["normalization"]
        lines.append(f"  input:     (DN - mean) / std, mean {norm['mean']}, std {norm['std']}")
    training = d.get("training") or {}
    if training:
        keys = [k for k in ("best_epoch", "epochs", "best_val_miou", "val_miou", "seconds")
                if k in training]  # fmt: skip
        shown = {k: training[k] for k in keys} or dict(list(training.items())[:4])
        lines.append(f"  training:  {json.dumps(shown, default=str)}")
    lines.append(f"  geounet:   {d.get('geounet_version')} (format {d.get('format_version')})")
    return "\n".join(lines)


@click.command(context_settings={"show_default": True})
@click.argument("target", nargs=-1, required=True, type=str)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@guarded
def info(target: tuple[str, ...], as_json: bool) -> None:
    """Describe a MODEL file, a SCENE (one raster, band files, SAFE, STAC item) or CHIPS folder.

    A model file's bands are the order `geounet predict` needs the scene's bands in.
    """
    d = describe(target)
    click.echo(json.dumps(d, indent=2, default=str) if as_json else _text(d))
