"""Run artefacts, the interface between training and the tools that read its results.

Training writes ``metrics.json`` (atomically) and Lightning checkpoints whose ``ftbnn_exp``
entry holds the run's metadata, with the model's :class:`~ftbnn_exp.models.ModelSpec` and the
resolved data config. Reports and deployment rebuild the model from that spec and the data
module from that config; neither needs Hydra or the run's config files.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ftbnn_exp.data import ClassificationDataModule
from ftbnn_exp.errors import UserError
from ftbnn_exp.models import ModelSpec, create


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint of ``ftbnn_exp``; a one-line :class:`UserError` otherwise."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"checkpoint '{file}' is not a file")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint '{file}' cannot be read: {error}") from error
    if "ftbnn_exp" not in checkpoint or "state_dict" not in checkpoint:
        raise UserError(f"checkpoint '{file}' was not written by ftbnn_exp training")
    return checkpoint


def model_weights(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model's own state dict (the LightningModule keeps it under ``model.``)."""
    return {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()
            if key.startswith("model.")}


def instantiate_plain(config: Mapping[str, Any]) -> Any:
    """``_target_(**rest)`` for a resolved config (a checkpoint's data config), nested
    ``_target_`` sections first (the ``augment`` option)."""
    module, _, name = str(config["_target_"]).rpartition(".")
    target = getattr(importlib.import_module(module), name)
    return target(**{k: instantiate_plain(v) if isinstance(v, Mapping) and "_target_" in v
                     else v for k, v in config.items() if not k.startswith("_")})


def data_config(metadata: Mapping[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """The run's resolved ``data`` config with ``data.key=value`` overrides (YAML values).
    Tools that read a checkpoint iterate its loaders themselves, on the CPU, so a run's device
    backend gives way to the ``pil`` path unless ``data.backend`` is overridden."""
    config = dict(metadata["config"]["data"])
    if "backend" in config:
        config["backend"] = "pil"
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key.startswith("data.") or key.count(".") != 1:
            raise UserError(f"data override '{override}' must look like data.<key>=<value>")
        config[key.removeprefix("data.")] = yaml.safe_load(value)
    return config


def data_module(metadata: Mapping[str, Any], overrides: list[str] = ()
                ) -> ClassificationDataModule:
    """The data module a checkpoint was trained on (``overrides``: e.g. ``data.root=...``)."""
    try:
        return instantiate_plain(data_config(metadata, overrides))
    except TypeError as error:
        raise UserError(f"data overrides {list(overrides)} do not fit data="
                        f"{metadata['config']['data'].get('name')}: {error}") from None


def model_spec(metadata: Mapping[str, Any]) -> ModelSpec:
    """The spec of a checkpoint's model; checkpoints from before specs were stored get theirs
    from their config (:func:`_spec_from_config`)."""
    if "model_spec" in metadata:
        return ModelSpec.from_dict(metadata["model_spec"])
    return _spec_from_config(metadata)


_FAMILY_KEYS = {
    "ftbnn": ("ftbnn_resnet", ("stem_relu", "bound")),
    "bireal": ("bireal_resnet", ("stem_relu", "bound", "explicit_nonlinearity")),
    "derived": ("derived_ftbnn", ("bound",)),
    "resnet_fp": ("resnet_fp", ()),
    "fig2": ("fig2_net", ("kind", "width", "bottleneck", "stem_stride", "pooled_size", "bound")),
}
"""Families and model keys of the configs that 0.1.0 checkpoints stored."""


def _spec_from_config(metadata: Mapping[str, Any]) -> ModelSpec:
    config = metadata["config"]
    name, keys = _FAMILY_KEYS[config["model"]["family"]]
    kwargs: dict[str, Any] = {key: config["model"][key] for key in keys}
    shape = data_module(metadata).spec
    kwargs.update(in_channels=shape.in_channels, num_classes=shape.num_classes)
    if name != "fig2_net":
        kwargs.update(depth=config["depth"], image_size=shape.image_size)
    if name == "derived_ftbnn":
        kwargs.update(width=metadata.get("width") or config["width"], groups=config["groups"])
    if name in ("ftbnn_resnet", "bireal_resnet", "derived_ftbnn"):
        n = config["nonlinearity"]
        kwargs["schedule"] = {"stage_end": n["stage_end"], "other": n["other"],
                              "placement": n["placement"],
                              "placement_args": ({"period": n["period"]}
                                                 if n["placement"] == "period" else {})}
    return ModelSpec(name, kwargs, version="0.1.0")


def model_from_metadata(metadata: Mapping[str, Any]) -> nn.Module:
    """The untrained model a checkpoint's metadata describes."""
    return create(model_spec(metadata))


def model_from_checkpoint(checkpoint: Mapping[str, Any]) -> nn.Module:
    """The trained model of a checkpoint of this framework, in eval mode."""
    model = model_from_metadata(checkpoint["ftbnn_exp"])
    model.load_state_dict(model_weights(checkpoint))
    return model.eval()


def _plain(value: Any) -> Any:
    """JSON-safe numbers: tensors to floats, non-finite floats to strings ("nan", "inf")."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_json_atomic(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: a crash
    never leaves half a file behind."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(_plain(payload), stream, indent=2, sort_keys=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
