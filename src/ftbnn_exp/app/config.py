"""Where the configs live, composing them, and checking them once.

Values that go into a spec dataclass (schedule, placement, optimizer, scheduler, distillation,
model family and arguments) are checked by building that spec (:func:`specs`); the few keys
that belong to no spec are checked here, against :data:`_SCHEMA`. Either way through
:func:`ftbnn_exp.validation.check_value`, with allowed values read from the registries. Every
key must be one that something reads (:func:`check_known_keys`; ``~key`` only where keys are
free), and the trainer must fit the machine it starts on (:func:`check_machine`).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import MissingConfigException
from hydra.utils import get_object
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import Accelerator, AcceleratorRegistry
from lightning.pytorch.plugins.environments import (
    LSFEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from omegaconf import DictConfig, ListConfig, OmegaConf

from ftbnn_exp import plugins
from ftbnn_exp.artifacts import load_checkpoint
from ftbnn_exp.complexity import CONVENTIONS
from ftbnn_exp.errors import UserError, one_line_message
from ftbnn_exp.models import Family, family
from ftbnn_exp.nn import NonLinearitySchedule, part
from ftbnn_exp.training.distillation import STAGE_MODES, DistillationSpec
from ftbnn_exp.training.optim import OptimizerSpec, SchedulerSpec
from ftbnn_exp.validation import (
    BOOLEAN,
    FRACTION,
    INTEGER,
    NUMBER,
    TEXT,
    check_value,
    keyword_arguments,
)

CONF_DIR = Path(str(files("ftbnn_exp.conf")))
"""The package's configs, where this copy is installed (the repository's ``conf/`` in an
editable install); a user's own configs come through ``hydra.searchpath``."""

CHOSEN_PARTS = ("binarizer", "scaling")
"""Model keys that name a registered part, which a run name shows when not its option's."""


def part_suffix(model: DictConfig) -> str:
    """``${ftbnn_exp.parts:${model}}`` in ``run_name``: ``-<part>`` for each part that differs
    from its ``model=`` option's own (``baseline-relu_partial_fprelu-approxsign``), so a run
    with another part gets its own name and folder. In the run name, not in ``model.label``:
    the model section is run-shaping, and a finished sweep's runs must still match it."""
    path = CONF_DIR / "model" / f"{model.get('name')}.yaml"
    if not path.is_file():  # a plug-in's option: its own label says what it wants
        return ""
    own = OmegaConf.load(path)
    return "".join(f"-{model[key]}" for key in CHOSEN_PARTS
                   if key in model and key in own and model[key] != own[key])


OmegaConf.register_new_resolver("ftbnn_exp.parts", part_suffix, replace=True)

MODEL_META_KEYS = ("name", "label", "family", "scheduler")
"""Keys of a ``model=`` yaml that describe the option; every other key is a builder argument."""
DATA_SHAPE_KEYS = ("in_channels", "num_classes", "image_size")
"""What a model learns from its data; passed to the builders that take them."""
FREE_SECTIONS = ("callbacks", "logger")
"""Sections whose entries are the user's own ``_target_`` configs (``+callbacks.x={...}``):
any key may be added there, and deleted."""
REGISTRY_SECTIONS = ("model", "placement")
"""Sections whose keys the model and placement registries check (builder arguments)."""
SCHEDULE_FROM_PLACEMENT = ("placement", "placement_args")
"""Fields of the schedule that come from ``placement=``, not from ``nonlinearity=``."""
SPEC_SECTIONS: dict[str, tuple[type, tuple[str, ...]]] = {
    "optimizer": (OptimizerSpec, ()),
    "scheduler": (SchedulerSpec, ()),
    "kd": (DistillationSpec, ()),
    "nonlinearity": (NonLinearitySchedule, SCHEDULE_FROM_PLACEMENT),
}
"""Sections read into a spec dataclass: (the spec, its fields given from elsewhere)."""
HYDRA_KEYS = frozenset({"_target_", "_convert_", "_recursive_", "_partial_", "_args_"})

# Keys that belong to no spec: (kind, allowed values or None, must be positive, may be null).
_SCHEMA: dict[str, tuple[str | None, tuple[Any, ...] | None, bool, bool]] = {
    "seed": (INTEGER, None, False, False),
    "depth": (INTEGER, None, True, True),
    "groups": (INTEGER, None, True, True),
    "width": (INTEGER, None, True, True),
    "budget": (NUMBER, None, True, True),
    "budget_rate": (NUMBER, None, True, False),
    "convention": (None, CONVENTIONS, False, True),
    "test_weights": (None, ("last", "best"), False, False),
    "progress_step": (None, ("batch", "epoch"), False, False),
    "trainer.max_epochs": (INTEGER, None, True, False),
    "trainer.num_nodes": (INTEGER, None, True, False),
    "trainer.gradient_clip_val": (NUMBER, None, False, True),
    "data.batch_size": (INTEGER, None, True, False),
    "data.num_workers": (INTEGER, None, False, True),
    "data.noise": (NUMBER, None, False, True),
    "data.skip_corrupt": (BOOLEAN, None, False, True),
    "data.image_size": (INTEGER, None, True, False),
    "data.eval_resize": (INTEGER, None, True, True),
    "data.num_classes": (INTEGER, None, True, True),
    "data.in_channels": (None, (1, 3), False, True),
    "data.val_fraction": (FRACTION, None, True, True),
    "data.test_fraction": (FRACTION, None, True, True),
    "stage": (None, tuple(STAGE_MODES), False, True),
    "lean_backward": (BOOLEAN, None, False, False),
    "channels_last": (None, ("auto", True, False), False, False),
    "compile": (BOOLEAN, None, False, False),
    "optimizer.scale_lr": (BOOLEAN, None, False, True),
    "optimizer.reference_batch": (INTEGER, None, True, True),
    "resume_changes": (None, ("refuse", "rescale"), False, False),
    "checkpoint.every_n_minutes": (NUMBER, None, True, True),
    "checkpoint.every_n_steps": (INTEGER, None, True, True),
    "checkpoint.keep_last": (INTEGER, None, True, False),
    "checkpoint.best": (None, ("weights", "full", "none"), False, False),
    "checkpoint.on_completion": (None, ("keep", "weights", "none"), False, False),
    "kd.attention_from": (None, ("teacher", "previous_stage"), False, False),
    "kd.distill_stage0": (BOOLEAN, None, False, False),
    "kd.teacher": (TEXT, None, False, False),
    "kd.teacher_epochs": (INTEGER, None, True, False),
    "kd.epochs": (None, None, False, False),
    "kd.stages": (None, None, False, False),
    "kd.stage_overrides": (None, None, False, False),
}


@dataclass(frozen=True)
class RunSpecs:
    """Everything a run builds from, checked: what :func:`validate` returns."""

    family: Family
    model_kwargs: dict[str, Any]
    schedule: NonLinearitySchedule | None
    optimizer: OptimizerSpec
    scheduler: SchedulerSpec
    distillation: DistillationSpec | None


def spec_from(cls: type, section: DictConfig | dict, **given: Any) -> Any:
    """A spec dataclass filled by field name from a config section (lists become tuples)."""
    values = {}
    for f in fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
        elif f.name in section:
            value = section[f.name]
            values[f.name] = tuple(value) if OmegaConf.is_list(value) else value
    return cls(**values)


def schedule_of(cfg: DictConfig) -> NonLinearitySchedule:
    """``nonlinearity=``'s modules, placed where ``placement=`` says (SCHEDULE_FROM_PLACEMENT)."""
    p = cfg.placement
    return spec_from(NonLinearitySchedule, cfg.nonlinearity, placement=p.name,
                     placement_args={k: v for k, v in p.items() if k != "name"})


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The builder arguments a ``model=`` yaml sets (size keys interpolated from the top)."""
    section = OmegaConf.to_container(cfg.model, resolve=True)
    return {k: v for k, v in section.items() if k not in MODEL_META_KEYS}


def specs(cfg: DictConfig) -> RunSpecs:
    entry = family(cfg.model.family)
    kwargs = model_kwargs(cfg)
    # a solved family's width may be unset here: the solver fills it in later
    given = {k: v for k, v in kwargs.items()
             if not (entry.solved_width and k == "width" and v is None)}
    entry.check_arguments(given, "model.", hidden=(*DATA_SHAPE_KEYS, "schedule"),
                          complete=False)
    for argument, (kind, name) in (entry.part_names(kwargs) or {}).items():
        if argument in kwargs:  # registered parts, named before anything is built
            part(kind, name, f"model.{argument}")
    return RunSpecs(
        family=entry,
        model_kwargs=kwargs,
        schedule=schedule_of(cfg) if entry.takes_schedule else None,
        optimizer=spec_from(OptimizerSpec, cfg.optimizer),
        scheduler=spec_from(SchedulerSpec, cfg.scheduler),
        distillation=spec_from(DistillationSpec, cfg.kd) if cfg.get("kd") else None,
    )


def missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Keys still ``???``, found without resolving interpolations (``${hydra:...}`` needs a
    running Hydra)."""
    found = []
    for key in cfg:
        path = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            found.append(path)
        elif not OmegaConf.is_interpolation(cfg, key) and isinstance(cfg[key], DictConfig):
            found.extend(missing_keys(cfg[key], f"{path}."))
    return found


@lru_cache(maxsize=1)
def top_level_keys() -> frozenset[str]:
    """The keys of ``conf/config.yaml`` and the names of its config groups: all that is read
    at the top of a run's config."""
    base = OmegaConf.load(CONF_DIR / "config.yaml")
    groups = {key for entry in base.defaults if isinstance(entry, DictConfig) for key in entry}
    return frozenset((set(base) - {"defaults", "hydra"}) | groups)


def schema_leaves(section: str) -> set[str]:
    """The keys of ``section`` that :data:`_SCHEMA` checks."""
    return {key.split(".", 1)[1] for key in _SCHEMA if key.startswith(f"{section}.")}


def target_parameters(target: str) -> set[str] | None:
    """The keyword arguments ``target`` takes (:func:`~ftbnn_exp.validation.keyword_arguments`);
    None when it takes any keyword."""
    try:
        found = get_object(target)
    except Exception as error:
        raise UserError(f"_target_={target} cannot be imported ({one_line_message(error)})"
                        ) from None
    names, open_ended = keyword_arguments(found)
    return None if open_ended else set(names)


def section_keys(name: str, section: DictConfig) -> tuple[set[str] | None, str]:
    """The keys section ``name`` may hold (None: any) and what reads them, for messages."""
    if name in SPEC_SECTIONS:
        spec, given = SPEC_SECTIONS[name]
        own = {f.name for f in fields(spec)} - set(given)
        return {"name", *own, *schema_leaves(name)}, f"a key of {name}"
    if "_target_" in section:
        parameters = target_parameters(section._target_)
        allowed = None if parameters is None else parameters | HYDRA_KEYS
        return allowed, f"an argument of {section._target_}"
    return schema_leaves(name), f"a key of {name}"


def check_known_keys(cfg: DictConfig) -> None:
    """Every key is one that something reads: ``+foo=1``, ``+optimizer.bogus=1`` or a misspelt
    key in a yaml is refused, not ignored. :data:`FREE_SECTIONS` take any key;
    :data:`REGISTRY_SECTIONS` are checked by their registries (:func:`specs`)."""
    allowed_top = top_level_keys()
    for name in cfg:
        if name not in allowed_top:
            raise UserError(f"{name} is not a config key; allowed: "
                            f"{', '.join(sorted(allowed_top))}")
        if (name in FREE_SECTIONS + REGISTRY_SECTIONS or OmegaConf.is_interpolation(cfg, name)
                or not isinstance(cfg[name], DictConfig)):
            continue
        allowed, owner = section_keys(name, cfg[name])
        unknown = sorted(set(cfg[name]) - allowed) if allowed is not None else []
        if unknown:
            raise UserError(f"{name}.{unknown[0]} is not {owner}; allowed: "
                            f"{', '.join(sorted(allowed - HYDRA_KEYS))}")


def check_init_from(cfg: DictConfig) -> None:
    """A multi-step run's ``init_from`` is a checkpoint of this framework: refused before a
    teacher trains for it, not after."""
    init_from = cfg.get("init_from")
    if init_from is None or not cfg.get("kd"):
        return
    if not Path(str(init_from)).is_file():
        raise UserError(f"init_from={init_from} is not a file; give a checkpoint (.ckpt) of "
                        f"this framework")
    try:
        load_checkpoint(init_from)
    except UserError as error:
        raise UserError(f"init_from={init_from}: {one_line_message(error)}; allowed: a "
                        f"checkpoint (.ckpt) of this framework") from None


def check_multistep_keys(cfg: DictConfig) -> None:
    """``stage`` and ``init_from`` are read by ``experiment=kd_multistep`` only: a command
    line that sets them for a plain run is refused, not ignored. (Checked on the command line:
    the pipeline's own teacher run inherits them unused.) ``kd.stages`` lists stages in
    order, each once (Real-to-Bin's baseline: ``[1, 2]``, its BAN and BNN steps)."""
    stages = list(cfg.kd.get("stages") or []) if cfg.get("kd") else None
    if stages is not None and (not stages or stages != sorted(set(stages))
                               or not set(stages) <= set(STAGE_MODES)):
        raise UserError(f"kd.stages={stages} must list stages in increasing order, each once; "
                        f"allowed: {', '.join(map(str, STAGE_MODES))}")
    for key in ("stage", "init_from"):
        if cfg.get(key) is not None and not cfg.get("kd"):
            raise UserError(f"{key}={cfg[key]} is read only by experiment=kd_multistep (one "
                            f"stage, from init_from's weights); allowed here: null")


def accelerator_class(name: str) -> type[Accelerator]:
    """Lightning's accelerator registered as ``name`` (cpu, cuda, mps, tpu, a plug-in's)."""
    return AcceleratorRegistry[name]["accelerator"]


def accelerator_backend(name: str) -> str:
    """``trainer.accelerator`` as Lightning resolves ``auto`` (a device where one is available,
    else the CPU) and ``gpu`` (Lightning's name for CUDA or MPS)."""
    if name not in ("auto", "gpu"):
        return name
    devices = sorted(n for n in AcceleratorRegistry.available_accelerators() if n != "cpu")
    usable = [n for n in devices if accelerator_class(n).is_available()
              and (name == "auto" or n in ("cuda", "mps"))]
    return usable[0] if usable else ("cpu" if name == "auto" else "cuda")


def cpu_cores() -> int:
    """The cores this process may run on (its affinity: taskset, a SLURM allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def requested_devices(devices: Any, backend: str) -> int:
    """How many processes ``trainer.devices`` starts, read as Lightning reads it (``auto``,
    ``-1``, a count, ``"2"``, a list of GPU ids or ``"0,1"``)."""
    accelerator = accelerator_class(backend)
    if devices == "auto":
        return 1 if backend == "cpu" else accelerator.auto_device_count()
    return len(accelerator.get_parallel_devices(accelerator.parse_devices(devices)))


def check_devices(name: str, backend: str, devices: Any) -> None:
    """``trainer.devices`` as Lightning reads it, up to this machine's cores or devices."""
    devices = list(devices) if isinstance(devices, ListConfig) else devices
    capacity = cpu_cores() if backend == "cpu" else accelerator_class(backend).auto_device_count()
    try:
        count = requested_devices(devices, backend)
    except (TypeError, ValueError, MisconfigurationException):
        count = None  # a form Lightning does not take for this accelerator
    if count is None or count > capacity:
        unit = "CPU cores" if backend == "cpu" else f"{backend.upper()} devices"
        allowed = (f"auto or 1 to {capacity}" if backend == "cpu" else
                   f"auto, -1, 1 to {capacity} or ids from 0 to {capacity - 1}")
        raise UserError(f"trainer.devices={devices} does not fit this machine's {capacity} "
                        f"{unit} (trainer.accelerator={name}); allowed: {allowed}")


def check_machine(trainer: DictConfig) -> None:
    """``trainer.accelerator``, ``devices`` and ``num_nodes`` against this machine, before
    anything starts: CPU processes up to its cores, GPUs up to ``torch.cuda.device_count()``
    (``trainer.devices=64`` on 2 cores forked 63 DDP processes before anything refused it),
    more than one node only where every node runs the command (else rank 0 waits for ever)."""
    name = trainer.get("accelerator", "auto")
    backend = accelerator_backend(name)
    if not accelerator_class(backend).is_available():
        here = ["auto", *sorted(n for n in AcceleratorRegistry.available_accelerators()
                                if accelerator_class(n).is_available())]
        raise UserError(f"trainer.accelerator={name}: this machine has no {backend.upper()} "
                        f"device; allowed here: {', '.join(here)}")
    check_devices(name, backend, trainer.get("devices", "auto"))
    nodes = trainer.get("num_nodes", 1)
    launched = any(env.detect() for env in (SLURMEnvironment, TorchElasticEnvironment,
                                            LSFEnvironment)) or "NODE_RANK" in os.environ
    if nodes > 1 and not launched:
        raise UserError(f"trainer.num_nodes={nodes} needs this command started on every node "
                        f"(hydra/launcher=slurm, torchrun, or NODE_RANK, MASTER_ADDR and "
                        f"MASTER_PORT set); allowed here: 1")


def validate(cfg: DictConfig, on_this_machine: bool = True) -> RunSpecs:
    """Check ``cfg`` once and return its specs; a :class:`UserError` names the first bad key.
    ``on_this_machine``: the run starts here, so its trainer must fit this machine (not so
    for a job that a launcher such as SLURM starts elsewhere: it checks where it lands)."""
    missing = missing_keys(cfg)
    if missing:
        raise UserError(f"{missing[0]} is required here (set {missing[0]}=...)")
    plugins.load(cfg.get("plugins") or [], option="plugins")
    check_known_keys(cfg)
    for key, (kind, allowed, positive, optional) in _SCHEMA.items():
        parent, _, leaf = key.rpartition(".")
        section = OmegaConf.select(cfg, parent) if parent else cfg
        if section is None or leaf not in section:
            continue  # a section without this key (a data set without `noise`)
        check_value(key, section[leaf], kind, allowed, positive, optional)
    accelerators = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
    check_value("trainer.accelerator", cfg.trainer.get("accelerator", "auto"), TEXT,
                accelerators)
    if on_this_machine:
        check_machine(cfg.trainer)
    check_init_from(cfg)
    if cfg.test_weights == "best" and cfg.checkpoint.get("best") == "none":
        raise UserError("test_weights=best needs best.ckpt; checkpoint.best=none writes none "
                        "(allowed with it: test_weights=last)")
    return specs(cfg)


def nested_options(group: str, option: str) -> tuple[str, str, list[str]] | None:
    """A missing option below a group (``experiment=table3/prelu_``) as the group, the option
    and the options of its subfolder in the package's configs (``table3/baseline``, ...; the
    group's top level when the subfolder itself is not there). Hydra names such an option
    ``experiment/table3=prelu_`` and offers the top level's options only."""
    top, _, sub = group.partition("/")
    if not sub or top not in top_level_keys():
        return None
    folder = CONF_DIR / top
    inner = folder / sub
    found = (sorted(f"{sub}/{p.stem}" for p in inner.glob("*.yaml")) if inner.is_dir() else
             sorted([p.stem for p in folder.glob("*.yaml")]
                    + [f"{d.name}/..." for d in folder.iterdir() if d.is_dir()
                       and not d.name.startswith("_")]))
    return top, f"{sub}/{option}", found


def config_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every key of ``cfg``, dotted (interpolations not resolved)."""
    found = []
    for key in cfg:
        path = f"{prefix}{key}"
        found.append(path)
        if not OmegaConf.is_interpolation(cfg, key) and isinstance(cfg[key], DictConfig):
            found.extend(config_keys(cfg[key], f"{path}."))
    return found


def did_you_mean(key: str, overrides: Sequence[str] = ()) -> str | None:
    """The config key nearest ``key`` (``trainer.max_epoch`` → ``trainer.max_epochs``; a bare
    leaf, ``lr``, → the one key that ends with it, ``optimizer.lr``), in the config that the
    command line's group choices compose; None when none is near."""
    groups = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0]
              and not o.startswith(("+", "~"))]
    try:
        keys = config_keys(compose_config(groups))
    except Exception:
        keys = config_keys(compose_config([]))
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.8)
    if close:
        return close[0]
    leaf = key.rpartition(".")[2]
    ending = [k for k in keys if k.rpartition(".")[2] == leaf]
    if len(ending) == 1:
        return ending[0]
    near = difflib.get_close_matches(leaf, {k.rpartition(".")[2] for k in keys}, n=1,
                                     cutoff=0.8)
    ending = [k for k in keys if near and k.rpartition(".")[2] == near[0]]
    return ending[0] if len(ending) == 1 else None


_NOT_OVERRIDABLE = re.compile(r"Could not override '([^']+)'\. To append to your config use "
                              r"\+\S+ Key '[^']+' is not in struct")


def one_line(error: BaseException, overrides: Sequence[str] = ()) -> str:
    """A composition or validation error as one readable line; ``overrides``: the command
    line's, for a did-you-mean among the keys they compose."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        options = getattr(error, "options", None)
        nested = nested_options(group, option)
        if nested:
            top, option, found = nested
            return f"{top}={option} is not an option; allowed: {', '.join(found)}"
        if group and options:
            return f"{group}={option} is not an option; allowed: {', '.join(sorted(options))}"
    cause = error.__cause__ or error.__context__
    text = str(error)
    if cause is not None and type(error).__name__ == "ConfigCompositionException":
        text = f"{text} {cause}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = " ".join(line for line in lines
                    if not line.startswith(("full_key", "object_type", "reference_type")))
    unknown = _NOT_OVERRIDABLE.search(kept)
    if unknown:  # Hydra's hint, +key, adds a key that nothing reads (check_known_keys)
        key = unknown.group(1)
        near = did_you_mean(key, overrides)
        return (f"{key} is not a config key; " + (f"did you mean {near}?" if near else
                "`python -m ftbnn_exp --cfg job` prints them all"))
    return kept


def _override_sets(parsed: list[Override]) -> Iterable[list[str]]:
    """The override lists a (multi)run composes: sweeps are tried one value at a time."""
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    yield fixed
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            for value in override.sweep_string_iterator():
                yield [*fixed, f"{key}={value}"]


def sweep_size(overrides: list[str]) -> int | None:
    """How many jobs a multirun's command line makes (the product of its sweeps, as Hydra's
    basic sweeper forms them), for its ``[3/9]`` progress; None if it does not parse."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return None
    return math.prod(len(list(o.sweep_string_iterator())) for o in parsed
                     if o.is_sweep_override())


def check_deletions(parsed: list[Override]) -> None:
    """``~key`` only in :data:`FREE_SECTIONS`: elsewhere a deleted key is one the run needs
    (``~seed``, ``~model``) or one whose default would be taken without a word
    (``~optimizer.lr``)."""
    for override in parsed:
        key = override.key_or_group
        if override.is_delete() and key.split(".")[0] not in FREE_SECTIONS:
            raise UserError(f"~{key}: {key} is required and cannot be deleted (allowed: "
                            f"~{'.<name>, ~'.join(FREE_SECTIONS)}.<name>); set {key}=... "
                            f"instead")


def launched_here(overrides: list[str]) -> bool:
    """Whether the jobs run on this machine: not with a launcher such as
    ``hydra/launcher=slurm``, whose jobs check the machine they land on."""
    return not any(o.lstrip("+").startswith("hydra/launcher=") and not o.endswith("=basic")
                   for o in overrides)


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` outside of a Hydra run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def check_overrides(overrides: list[str]) -> None:
    """Compose and validate every configuration a command line asks for; raise UserError.
    Of Hydra's own keys only ``hydra.searchpath`` (plug-in configs) changes what composes,
    and ``hydra/launcher`` where the jobs run."""
    user = [o for o in overrides
            if not o.lstrip("+~").startswith("hydra") or o.startswith("hydra.searchpath")]
    try:
        parsed = OverridesParser.create().parse_overrides(user)
        sets = list(_override_sets(parsed))
    except Exception as error:  # the override grammar's own errors
        raise UserError(one_line(error)) from error
    check_deletions(parsed)
    for override_set in sets:
        try:
            cfg = compose_config(override_set)
        except Exception as error:
            raise UserError(one_line(error, override_set)) from error
        validate(cfg, on_this_machine=launched_here(overrides))
        check_multistep_keys(cfg)
