"""Where the configs live, composing them, and checking them once.

Values that go into a spec dataclass (schedule, placement, optimizer, scheduler, distillation,
model family and arguments) are checked by building that spec (:func:`specs`); the few keys
that belong to no spec are checked here, against :data:`_SCHEMA`. Either way through
:func:`ftbnn_exp.validation.check_value`, with allowed values read from the registries.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

from ftbnn_exp.complexity import CONVENTIONS
from ftbnn_exp.errors import UserError
from ftbnn_exp.models import Family, family
from ftbnn_exp.nn import NonLinearitySchedule
from ftbnn_exp.training.distillation import STAGE_MODES, DistillationSpec
from ftbnn_exp.training.optim import OptimizerSpec, SchedulerSpec
from ftbnn_exp.validation import BOOLEAN, INTEGER, NUMBER, check_value

CONF_DIR = Path(os.environ.get("FTBNN_CONF_DIR", Path(__file__).resolve().parents[3] / "conf"))

MODEL_META_KEYS = ("name", "label", "family", "scheduler")
"""Keys of a ``model=`` yaml that describe the option; every other key is a builder argument."""
DATA_SHAPE_KEYS = ("in_channels", "num_classes", "image_size")
"""What a model learns from its data; passed to the builders that take them."""

# Keys that belong to no spec: (kind, allowed values or None, must be positive, may be null).
_SCHEMA: dict[str, tuple[str | None, tuple[Any, ...] | None, bool, bool]] = {
    "seed": (INTEGER, None, False, False),
    "depth": (INTEGER, None, True, True),
    "groups": (INTEGER, None, True, True),
    "width": (INTEGER, None, True, True),
    "budget": (NUMBER, None, True, True),
    "convention": (None, CONVENTIONS, False, True),
    "test_weights": (None, ("last", "best"), False, False),
    "trainer.max_epochs": (INTEGER, None, True, False),
    "data.batch_size": (INTEGER, None, True, False),
    "data.num_workers": (INTEGER, None, False, True),
    "data.noise": (NUMBER, None, False, True),
    "data.skip_corrupt": (BOOLEAN, None, False, True),
    "data.image_size": (INTEGER, None, True, False),
    "data.eval_resize": (INTEGER, None, True, True),
    "data.num_classes": (INTEGER, None, True, True),
    "data.in_channels": (None, (1, 3), False, True),
    "data.val_fraction": (NUMBER, None, True, True),
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
    "kd.attention_from": (None, ("teacher", "previous_stage"), False, False),
    "kd.distill_stage0": (BOOLEAN, None, False, False),
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


def import_plugins(cfg: DictConfig) -> None:
    """Import ``plugins``: modules that register model families or placements."""
    for module in cfg.get("plugins") or []:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UserError(f"plugins: module {module!r} cannot be imported ({error})") from None


def schedule_of(cfg: DictConfig) -> NonLinearitySchedule:
    n, p = cfg.nonlinearity, cfg.placement
    args = {k: v for k, v in p.items() if k != "name"}
    return NonLinearitySchedule(stage_end=n.stage_end, other=n.other, placement=p.name,
                                placement_args=args)


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


def validate(cfg: DictConfig) -> RunSpecs:
    """Check ``cfg`` once and return its specs; a :class:`UserError` names the first bad key."""
    missing = missing_keys(cfg)
    if missing:
        raise UserError(f"{missing[0]} is required here (set {missing[0]}=...)")
    import_plugins(cfg)
    for key, (kind, allowed, positive, optional) in _SCHEMA.items():
        parent, _, leaf = key.rpartition(".")
        section = OmegaConf.select(cfg, parent) if parent else cfg
        if section is None or leaf not in section:
            continue  # a section without this key (a data set without `noise`)
        check_value(key, section[leaf], kind, allowed, positive, optional)
    init_from = cfg.get("init_from")
    if init_from is not None and not Path(str(init_from)).is_file():
        # Checked before anything trains (a multi-step run may train its teacher first).
        raise UserError(f"init_from={init_from} is not a file; give a checkpoint (.ckpt) of "
                        f"this framework")
    return specs(cfg)


def one_line(error: BaseException) -> str:
    """A composition or validation error as one readable line."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        options = getattr(error, "options", None)
        if group and options:
            return f"{group}={option} is not an option; allowed: {', '.join(sorted(options))}"
    cause = error.__cause__ or error.__context__
    text = str(error)
    if cause is not None and type(error).__name__ == "ConfigCompositionException":
        text = f"{text} {cause}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in lines
            if not line.startswith(("full_key", "object_type", "reference_type"))]
    return " ".join(kept)


def _override_sets(overrides: list[str]) -> Iterable[list[str]]:
    """The override lists a (multi)run composes: sweeps are tried one value at a time."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    yield fixed
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            for value in override.sweep_string_iterator():
                yield [*fixed, f"{key}={value}"]


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` outside of a Hydra run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def check_overrides(overrides: list[str]) -> None:
    """Compose and validate every configuration a command line asks for; raise UserError.
    Of Hydra's own keys only ``hydra.searchpath`` (plug-in configs) changes what composes."""
    user = [o for o in overrides
            if not o.lstrip("+~").startswith("hydra") or o.startswith("hydra.searchpath")]
    try:
        sets = list(_override_sets(user))
    except Exception as error:  # the override grammar's own errors
        raise UserError(one_line(error)) from error
    for override_set in sets:
        try:
            cfg = compose_config(override_set)
        except Exception as error:
            raise UserError(one_line(error)) from error
        validate(cfg)
