"""Run artefacts, the interface between training and the tools that read its results.

A run's folder is a :class:`RunFolder`, which alone knows its file names; the keys of its
record that several modules share are :class:`Metric`'s. Training writes ``metrics.json``
(atomically) and Lightning checkpoints whose ``ftbnn_exp``
entry holds the run's metadata, with the model's :class:`~ftbnn_exp.models.ModelSpec` and the
resolved data config. Reports and deployment rebuild the model from that spec and the data
module from that config; neither needs Hydra or the run's config files.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch
import yaml
from torch import nn

from ftbnn_exp.data import ClassificationDataModule
from ftbnn_exp.data.registry import build_stored
from ftbnn_exp.errors import InvalidArgument, UserError
from ftbnn_exp.models import ModelSpec, create


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint of ``ftbnn_exp``; a one-line :class:`UserError` otherwise.
    Read with ``weights_only=True`` (tensors and plain values, no pickled code); what it holds
    is checked for shape here, and nothing in it is ever imported or called (see
    :func:`data_module` and :func:`model_from_checkpoint`)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"checkpoint '{file}' is not a file")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint '{file}' cannot be read: {reason(error)}") from None
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("ftbnn_exp"), dict)
            and isinstance(checkpoint.get("state_dict"), dict)):
        raise UserError(f"checkpoint '{file}' was not written by ftbnn_exp training")
    check_tensors(checkpoint, f"checkpoint '{file}'")
    checkpoint["ftbnn_exp"] = {**checkpoint["ftbnn_exp"], "source": f"checkpoint '{file}'"}
    return checkpoint


def _dense(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` covers its elements once each, in some dimension order (contiguous,
    channels-last, a transpose): no stride 0 (``expand``), no overlap, no gaps."""
    expected = 1
    for size, stride in sorted(((n, s) for n, s in zip(tensor.shape, tensor.stride(),
                                                        strict=True) if n != 1),
                               key=lambda pair: pair[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def _tensors(value: Any, key: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield key, value
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from _tensors(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{key}[{index}]")


def check_tensors(loaded: Any, source: str) -> None:
    """Refuse a file whose tensors claim more than it holds: a tensor must be dense (no
    ``expand``-ed stride 0, no overlap) and its storage as large as its shape needs. Shapes are
    compared with the spec elsewhere (:func:`check_shapes`); this bounds the memory any reader
    allocates by the file's real size (a one-element storage expanded to a million classes
    passed the shape check and built a 5 GB model)."""
    for key, tensor in _tensors(loaded, ""):
        needed = (tensor.storage_offset() + tensor.numel()) * tensor.element_size()
        if not _dense(tensor) or tensor.untyped_storage().nbytes() < needed:
            raise UserError(f"{source}: tensor {key!r} of shape {list(tensor.shape)} is not "
                            f"stored whole (expanded, overlapping or with a storage smaller "
                            f"than its shape); allowed: dense tensors, as torch.save writes "
                            f"a model's weights")


def reason(error: BaseException) -> str:
    """An exception's informative line: torch.load's refusal of pickled code (the global it
    would have called), "not a whole torch checkpoint" for text or a torn file (torch answers
    those with a bare key such as '101'), else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = next((line for line in lines if line.startswith("WeightsUnpickler error")), None)
    if refused is None and lines and lines[0].startswith("Weights only load failed"):
        # a global torch refuses outright (os.system, a blocked module): the line naming it
        refused = next((line for line in lines if "GLOBAL" in line
                        or line.startswith("Unsupported")), lines[0])
    if refused:
        return (f"UnpicklingError: it holds pickled code, not loaded "
                f"({refused.split('. ')[0].removeprefix('WeightsUnpickler error: ')})")
    if isinstance(error, KeyError | EOFError | pickle.UnpicklingError) or (
            isinstance(error, RuntimeError) and "zip archive" in str(error)):
        return f"not a whole torch checkpoint ({type(error).__name__})"
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


def source_of(metadata: Mapping[str, Any]) -> str:
    """The file a checkpoint's or export's metadata came from, for messages."""
    return str(metadata.get("source", "the checkpoint"))


def model_weights(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model's own state dict (the LightningModule keeps it under ``model.``)."""
    return {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()
            if isinstance(key, str) and key.startswith("model.")}


def data_config(metadata: Mapping[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """The run's resolved ``data`` config with ``data.key=value`` overrides (YAML values).
    Tools that read a checkpoint iterate its loaders themselves, on the CPU, so a run's device
    backend gives way to the ``pil`` path unless ``data.backend`` is overridden."""
    stored = metadata.get(Metric.CONFIG, {})
    if not isinstance(stored, Mapping) or not isinstance(stored.get("data"), Mapping):
        raise UserError(f"{source_of(metadata)} holds no data config (config.data)")
    config = dict(stored["data"])
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
    """The data module a checkpoint was trained on (``overrides``: e.g. ``data.root=...``):
    its stored ``_target_`` looked up among the registered data classes, never imported."""
    config = data_config(metadata, overrides)
    try:
        return build_stored(config, source_of(metadata))
    except TypeError as error:
        raise UserError(f"data config of {source_of(metadata)} with overrides "
                        f"{list(overrides)} does not fit data={config.get('name')}: "
                        f"{reason(error)}") from None


def model_spec(metadata: Mapping[str, Any]) -> ModelSpec:
    """The spec of a checkpoint's model; checkpoints from before specs were stored get theirs
    from their config (:func:`_spec_from_config`)."""
    try:
        if Metric.MODEL_SPEC in metadata:
            return ModelSpec.from_dict(metadata[Metric.MODEL_SPEC])
        return _spec_from_config(metadata)
    except (KeyError, TypeError, AttributeError, InvalidArgument) as error:
        raise UserError(f"{source_of(metadata)} holds no usable model spec "
                        f"({reason(error)})") from None


_FAMILY_KEYS = {
    "ftbnn": ("ftbnn_resnet", ("stem_relu", "bound")),
    "bireal": ("bireal_resnet", ("stem_relu", "bound", "explicit_nonlinearity")),
    "derived": ("derived_ftbnn", ("bound",)),
    "resnet_fp": ("resnet_fp", ()),
    "fig2": ("fig2_net", ("kind", "width", "bottleneck", "stem_stride", "pooled_size", "bound")),
}
"""Families and model keys of the configs that 0.1.0 checkpoints stored."""


def _spec_from_config(metadata: Mapping[str, Any]) -> ModelSpec:
    config = metadata[Metric.CONFIG]
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
        kwargs["schedule"] = {"placed": n["stage_end"], "elsewhere": n["other"],
                              "placement": n["placement"],
                              "placement_args": ({"period": n["period"]}
                                                 if n["placement"] == "period" else {})}
    return ModelSpec(name, kwargs, version="0.1.0")


def model_from_metadata(metadata: Mapping[str, Any]) -> nn.Module:
    """The untrained model a checkpoint's metadata describes."""
    try:
        return create(model_spec(metadata), source_of(metadata))
    except (TypeError, ValueError, RuntimeError) as error:
        source = source_of(metadata)
        if isinstance(error, UserError):
            if source in str(error):
                raise
            raise UserError(f"{source}: {error}") from None  # e.g. an unknown family
        raise UserError(f"{source}: its model spec does not build a model "
                        f"({reason(error)})") from None


def load_weights_exactly(model: nn.Module, weights: Mapping[str, Any], source: str) -> None:
    """``model.load_state_dict(weights)``, strict, or one line naming ``source``."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise UserError(f"{source}: its weights do not fit the model its spec describes "
                        f"({reason(error)})") from None


def model_from_checkpoint(checkpoint: Mapping[str, Any]) -> nn.Module:
    """The trained model of a checkpoint of this framework, in eval mode. The spec's model is
    first built without memory (``meta``) and its shapes compared with the stored weights, so
    a forged spec (a huge width) is refused before anything is allocated."""
    metadata = checkpoint["ftbnn_exp"]
    weights = model_weights(checkpoint)
    check_shapes(metadata, weights)
    model = model_from_metadata(metadata)
    load_weights_exactly(model, weights, source_of(metadata))
    return model.eval()


def check_shapes(metadata: Mapping[str, Any], weights: Mapping[str, Any]) -> None:
    """Refuse weights whose names or shapes are not those of the spec's model."""
    with torch.device("meta"):
        expected = model_from_metadata(metadata).state_dict()
    wrong = sorted(key for key in expected.keys() | weights.keys()
                   if key not in weights or key not in expected
                   or not isinstance(weights[key], torch.Tensor)
                   or weights[key].shape != expected[key].shape)
    if wrong:
        raise UserError(f"{source_of(metadata)}: its weights do not fit the model its spec "
                        f"describes ({len(wrong)} tensors missing, unexpected or of another "
                        f"shape, e.g. {wrong[0]!r})")


MAX_DATA_BYTES = 16 * 2**20
"""The largest ``metrics.json`` or stored config read (a 1,000-epoch history is about 1 MB)."""
MAX_DEPTH, MAX_VALUES, MAX_ALIASES = 64, 2**20, 64
"""Nesting, values (aliases expanded) and YAML aliases a read file may hold: what training
writes stays far below them (Hydra writes no aliases); a "billion laughs" file does not."""
_LIMITS = (f"allowed: at most {MAX_DATA_BYTES // 2**20} MB, {MAX_DEPTH} levels, "
           f"{MAX_VALUES} values and {MAX_ALIASES} YAML aliases")


class _AliasCountingLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, refusing a file with more than :data:`MAX_ALIASES`."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases")
        return super().compose_node(parent, index)


def _check_bounded(value: Any, name: str) -> None:
    """Refuse data deeper than :data:`MAX_DEPTH` (a recursive alias is infinitely deep) or with
    more than :data:`MAX_VALUES` values once its aliases are expanded, walking at most that
    many: whatever reads it afterwards (a report's diff, a comparison) stays bounded too."""
    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH or seen > MAX_VALUES:
            raise UserError(f"{name} is nested deeper or holds more than a run's record or "
                            f"config can; {_LIMITS}")
        if isinstance(item, dict):
            stack += [(v, depth + 1) for pair in item.items() for v in pair]
        elif isinstance(item, list | tuple):
            stack += [(v, depth + 1) for v in item]


def _read_capped(file: Path, name: str) -> str:
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_DATA_BYTES + 1)
    except OSError as error:
        raise UserError(f"{name} cannot be read ({error.strerror})") from None
    if len(data) > MAX_DATA_BYTES:
        raise UserError(f"{name} is larger than a run's record or config can be; {_LIMITS}")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UserError(f"{name} is not UTF-8 text") from None


def read_json(path: str | Path) -> Any:
    """A JSON file written by training (``metrics.json``), read within :data:`MAX_DATA_BYTES`,
    :data:`MAX_DEPTH` and :data:`MAX_VALUES`; a one-line :class:`UserError` naming it
    otherwise."""
    file = Path(path)
    name = f"'{file}'"
    text = _read_capped(file, name)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        detail = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise UserError(f"{name} cannot be read as JSON: {detail}") from None
    _check_bounded(value, name)
    return value


def read_yaml(path: str | Path) -> Any:
    """A YAML file on disk (Hydra's ``.hydra/config.yaml``) as plain data: safe (no tags, no
    code), nothing resolved, and bounded as :func:`read_json` plus :data:`MAX_ALIASES`."""
    file = Path(path)
    name = f"'{file}'"
    text = _read_capped(file, name)
    try:
        value = yaml.load(text, Loader=_AliasCountingLoader)  # a SafeLoader: no tags, no code
    except (yaml.YAMLError, RecursionError) as error:
        detail = ("nested too deeply" if isinstance(error, RecursionError)
                  else " ".join(str(error).split())[:200])
        raise UserError(f"{name} cannot be read as YAML: {detail}; {_LIMITS}") from None
    _check_bounded(value, name)
    return value


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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` into a temporary file in ``path``'s own folder, fsync, rename over ``path``
    and fsync the folder: a crash or a full disk never leaves half a file behind, and the
    rename never crosses file systems (where it would be a copy)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # as open() would: teammates can read it
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself made durable
    except OSError:
        pass  # file systems that cannot fsync a folder (some FUSE, network ones)
    finally:
        os.close(folder)


def write_json_atomic(path: str | Path, payload: Mapping[str, Any]) -> None:
    """``payload`` as JSON, written with :func:`write_atomic`."""
    text = json.dumps(_plain(payload), indent=2, sort_keys=False) + "\n"
    write_atomic(path, lambda stream: stream.write(text.encode()))


class Metric:
    """The keys of ``metrics.json`` that more than one module reads or writes, named once
    (the record itself is written by :class:`~ftbnn_exp.training.callbacks.MetricsRecorder`;
    its other keys are its own)."""

    STATUS = "status"
    CONFIG = "config"
    MODEL_SPEC = "model_spec"
    HISTORY = "history"
    FINAL = "final"
    BEST = "best"
    EPOCHS_RUN = "epochs_run"
    WALL_SECONDS = "wall_seconds"
    COMPLEXITY = "complexity"
    COMPLEXITY_IMAGENET = "complexity_imagenet"
    TEST_TOP1, TEST_TOP5 = "test/top1", "test/top5"
    VAL_TOP1 = "val/top1"
    TRAIN_TOP1, TRAIN_LOSS = "train/top1", "train/loss"


LAST, BEST, INTERRUPTED = "last", "best", "interrupted"
"""The named checkpoints of a run (``checkpoints/<name>.ckpt``): the end of its last epoch,
its best validation epoch, and where Ctrl-C, SIGTERM or a crash stopped it."""
STEP_NAME = "step-{step}"
"""Lightning's file name pattern of the periodic checkpoints (``checkpoint.every_n_*``)."""


@dataclass(frozen=True)
class RunFolder:
    """A run's folder, the one place its file names live: ``metrics.json`` (its record, read
    and written here) and ``checkpoints/`` (``last``, ``best``, ``interrupted``, the periodic
    ``step-*``), beside Lightning's SLURM ``hpc_ckpt_*.ckpt`` in the folder itself. The
    names are those older run folders hold: any of them still reads."""

    path: Path

    METRICS: ClassVar[str] = "metrics.json"
    CHECKPOINTS: ClassVar[str] = "checkpoints"
    HPC_CHECKPOINTS: ClassVar[str] = "hpc_ckpt_*.ckpt"

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.ckpt`` (:data:`LAST`, :data:`BEST`, :data:`INTERRUPTED`)."""
        return self.checkpoints / f"{name}.ckpt"

    def tested_checkpoint(self, test_weights: str | None) -> Path:
        """The checkpoint a run was tested with: ``best.ckpt`` under ``test_weights=best``,
        else ``last.ckpt``."""
        return self.checkpoint(BEST if test_weights == BEST else LAST)

    def step_checkpoints(self) -> list[Path]:
        return list(self.checkpoints.glob(STEP_NAME.format(step="*") + ".ckpt"))

    def hpc_checkpoints(self) -> list[Path]:
        return list(self.path.glob(self.HPC_CHECKPOINTS))

    def checkpoint_files(self) -> list[Path]:
        """Every checkpoint the folder holds (named, periodic, SLURM's)."""
        return [*self.checkpoints.glob("*.ckpt"), *self.hpc_checkpoints()]

    def resume_candidates(self) -> list[Path]:
        """The checkpoints a run resumes from, newest first: ``last``, ``interrupted``, the
        periodic ``step-*`` and SLURM's ``hpc_ckpt_*`` (each saves the loader's position)."""
        found = [self.checkpoint(LAST), self.checkpoint(INTERRUPTED), *self.step_checkpoints(),
                 *self.hpc_checkpoints()]
        return sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime_ns,
                      reverse=True)

    def has_metrics(self) -> bool:
        return self.metrics_file.is_file()

    def read_metrics(self) -> Any:
        """The run's record, bounded as :func:`read_json` reads it."""
        return read_json(self.metrics_file)

    def write_metrics(self, payload: Mapping[str, Any]) -> None:
        """The run's record, written whole (:func:`write_json_atomic`)."""
        write_json_atomic(self.metrics_file, payload)
