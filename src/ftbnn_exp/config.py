"""Where the configs live, and user mistakes in them turned into one-line errors.

Only this module, :mod:`ftbnn_exp.build` and the CLI entry points touch Hydra.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

from ftbnn_exp.complexity import CONVENTIONS
from ftbnn_exp.errors import UserError
from ftbnn_exp.models.toy import KINDS
from ftbnn_exp.nn import MODULE_KINDS
from ftbnn_exp.training.optim import OPTIMIZERS, SCHEDULERS

CONF_DIR = Path(os.environ.get("FTBNN_CONF_DIR", Path(__file__).resolve().parents[2] / "conf"))

_INTEGER = "an integer"
_NUMBER = "a number"
_BOOLEAN = "true or false"
# Keys whose type we check before anything is built: (type, allowed values or None).
_SCHEMA: dict[str, tuple[str, tuple[Any, ...] | None]] = {
    "seed": (_INTEGER, None),
    "depth": (_INTEGER, None),
    "groups": (_INTEGER, None),
    "width": (_INTEGER, None),
    "budget": (_NUMBER, None),
    "convention": ("", (None, *CONVENTIONS)),
    "test_weights": ("", ("last", "best")),
    "nonlinearity.stage_end": ("", MODULE_KINDS),
    "nonlinearity.other": ("", MODULE_KINDS),
    "nonlinearity.placement": ("", ("stage_end", "period")),
    "nonlinearity.period": (_INTEGER, None),
    "optimizer.name": ("", OPTIMIZERS),
    "optimizer.lr": (_NUMBER, None),
    "optimizer.weight_decay": (_NUMBER, None),
    "optimizer.binary_weight_decay": (_NUMBER, None),
    "scheduler.name": ("", SCHEDULERS),
    "scheduler.gamma": (_NUMBER, None),
    "trainer.max_epochs": (_INTEGER, None),
    "data.batch_size": (_INTEGER, None),
    "data.num_workers": (_INTEGER, None),
    "model.bound": (_NUMBER, None),
    "data.noise": (_NUMBER, None),
    "model.stem_relu": (_BOOLEAN, None),
    "model.kind": ("", (None, *KINDS)),
    "stage": ("", (None, 0, 1, 2)),
    "lean_backward": (_BOOLEAN, None),
    "channels_last": ("", ("auto", True, False)),
    "data.skip_corrupt": (_BOOLEAN, None),
    "optimizer.scale_lr": (_BOOLEAN, None),
    "optimizer.reference_batch": (_INTEGER, None),
    "compile": (_BOOLEAN, None),
    "kd.temperature": (_NUMBER, None),
    "kd.kd_weight": (_NUMBER, None),
    "kd.ce_weight": (_NUMBER, None),
    "kd.attention_weight": (_NUMBER, None),
}
_POSITIVE = {"depth", "groups", "width", "budget", "trainer.max_epochs", "data.batch_size",
             "nonlinearity.period", "optimizer.lr", "model.bound", "kd.temperature",
             "optimizer.reference_batch"}


def _yaml(value: Any) -> str:
    """A value as it is written on the command line: null, true, false."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == _INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _BOOLEAN:
        return isinstance(value, bool)
    return True


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


def validate(cfg: DictConfig) -> None:
    """Check the keys of :data:`_SCHEMA`; raise :class:`UserError` naming the first bad one."""
    missing = missing_keys(cfg)
    if missing:
        raise UserError(f"{missing[0]} is required here (set {missing[0]}=...)")
    for key, (kind, allowed) in _SCHEMA.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            if allowed is not None and None not in allowed:
                raise UserError(f"{key} is required; allowed: {', '.join(map(str, allowed))}")
            continue
        if not _type_ok(value, kind):
            raise UserError(f"{key}={value!r} must be {kind}")
        if allowed is not None and value not in allowed:
            shown = ", ".join(_yaml(a) for a in allowed)
            raise UserError(f"{key}={value!r} is not allowed; allowed: {shown}")
        if key in _POSITIVE and value <= 0:
            raise UserError(f"{key}={value!r} must be positive")
    init_from = cfg.get("init_from")
    if init_from is not None and not Path(str(init_from)).is_file():
        # Checked before anything trains (a multi-step run may train its teacher first).
        raise UserError(f"init_from={init_from} is not a file; give a checkpoint (.ckpt) of "
                        f"this framework")


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
    """Compose and validate every configuration a command line asks for; raise UserError."""
    user = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
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
