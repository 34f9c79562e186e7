"""A command line's runs: the sweeps it asks for, each composed and checked before the first
job starts, and where its jobs run (here, or on a launcher's machines)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

from ftbnn_exp.app.compose import compose_config, one_line
from ftbnn_exp.app.schema import FREE_SECTIONS, check_multistep_keys, validate
from ftbnn_exp.errors import UserError


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
