"""Checking a composed config once: every key one that something reads, each value as its spec
or :data:`SCHEMA` takes it, and the specs a run builds from (:class:`RunSpecs`).

Values that go into a spec dataclass (schedule, placement, optimizer, scheduler, distillation,
model family and arguments) are checked by building that spec (:func:`specs`); the few keys
that belong to no spec are checked here, against :data:`SCHEMA`. Either way through
:func:`ftbnn_exp.validation.check_value`, with allowed values read from the registries. Every
key must be one that something reads (:func:`check_known_keys`; ``~key`` only where keys are
free), and the trainer must fit the machine it starts on (:mod:`.machine`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from lightning.pytorch.accelerators import AcceleratorRegistry
from omegaconf import DictConfig, OmegaConf

from ftbnn_exp import plugins
from ftbnn_exp.app.compose import top_level_keys
from ftbnn_exp.app.machine import check_machine
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


@dataclass(frozen=True)
class Rule:
    """How a key that belongs to no spec is checked (:func:`~ftbnn_exp.validation.check_value`):
    its ``kind`` (None: any type), the ``allowed`` values (None: any), whether it must be
    ``positive`` and whether it is ``optional`` (may be null)."""

    kind: str | None = None
    allowed: tuple[Any, ...] | None = None
    positive: bool = False
    optional: bool = False


SCHEMA: dict[str, Rule] = {
    "seed": Rule(INTEGER),
    "depth": Rule(INTEGER, positive=True, optional=True),
    "groups": Rule(INTEGER, positive=True, optional=True),
    "width": Rule(INTEGER, positive=True, optional=True),
    "budget": Rule(NUMBER, positive=True, optional=True),
    "budget_rate": Rule(NUMBER, positive=True),
    "convention": Rule(allowed=CONVENTIONS, optional=True),
    "test_weights": Rule(allowed=("last", "best")),
    "progress_step": Rule(allowed=("batch", "epoch")),
    "trainer.max_epochs": Rule(INTEGER, positive=True),
    "trainer.num_nodes": Rule(INTEGER, positive=True),
    "trainer.gradient_clip_val": Rule(NUMBER, optional=True),
    "data.batch_size": Rule(INTEGER, positive=True),
    "data.num_workers": Rule(INTEGER, optional=True),
    "data.noise": Rule(NUMBER, optional=True),
    "data.skip_corrupt": Rule(BOOLEAN, optional=True),
    "data.image_size": Rule(INTEGER, positive=True),
    "data.eval_resize": Rule(INTEGER, positive=True, optional=True),
    "data.num_classes": Rule(INTEGER, positive=True, optional=True),
    "data.in_channels": Rule(allowed=(1, 3), optional=True),
    "data.val_fraction": Rule(FRACTION, positive=True, optional=True),
    "data.test_fraction": Rule(FRACTION, positive=True, optional=True),
    "stage": Rule(allowed=tuple(STAGE_MODES), optional=True),
    "lean_backward": Rule(BOOLEAN),
    "channels_last": Rule(allowed=("auto", True, False)),
    "compile": Rule(BOOLEAN),
    "optimizer.scale_lr": Rule(BOOLEAN, optional=True),
    "optimizer.reference_batch": Rule(INTEGER, positive=True, optional=True),
    "resume_changes": Rule(allowed=("refuse", "rescale")),
    "checkpoint.every_n_minutes": Rule(NUMBER, positive=True, optional=True),
    "checkpoint.every_n_steps": Rule(INTEGER, positive=True, optional=True),
    "checkpoint.keep_last": Rule(INTEGER, positive=True),
    "checkpoint.best": Rule(allowed=("weights", "full", "none")),
    "checkpoint.on_completion": Rule(allowed=("keep", "weights", "none")),
    "kd.attention_from": Rule(allowed=("teacher", "previous_stage")),
    "kd.distill_stage0": Rule(BOOLEAN),
    "kd.teacher": Rule(TEXT),
    "kd.teacher_epochs": Rule(INTEGER, positive=True),
    "kd.epochs": Rule(),
    "kd.stages": Rule(),
    "kd.stage_overrides": Rule(),
}
"""Keys that belong to no spec, each with how :func:`validate` checks it."""


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


def schema_leaves(section: str) -> set[str]:
    """The keys of ``section`` that :data:`SCHEMA` checks."""
    return {key.split(".", 1)[1] for key in SCHEMA if key.startswith(f"{section}.")}


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


def validate(cfg: DictConfig, on_this_machine: bool = True) -> RunSpecs:
    """Check ``cfg`` once and return its specs; a :class:`UserError` names the first bad key.
    ``on_this_machine``: the run starts here, so its trainer must fit this machine (not so
    for a job that a launcher such as SLURM starts elsewhere: it checks where it lands)."""
    missing = missing_keys(cfg)
    if missing:
        raise UserError(f"{missing[0]} is required here (set {missing[0]}=...)")
    plugins.load(cfg.get("plugins") or [], option="plugins")
    check_known_keys(cfg)
    for key, rule in SCHEMA.items():
        parent, _, leaf = key.rpartition(".")
        section = OmegaConf.select(cfg, parent) if parent else cfg
        if section is None or leaf not in section:
            continue  # a section without this key (a data set without `noise`)
        check_value(key, section[leaf], rule.kind, rule.allowed, rule.positive, rule.optional)
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
