"""Plain config data (as read from a run folder: dicts, lists, values; no OmegaConf here): the
one config diff, read by ``report compare`` (what changed between runs) and by a resume's
check (what changed since its checkpoint)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

ABSENT = "(absent)"
"""A key one config has and another lacks."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys (``optimizer.lr``) to leaf values; a list or an empty mapping is a value."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def as_written(value: Any) -> str:
    """A value's identity as a setting, its JSON text: 1, 1.0 and true are different settings;
    mappings compare whatever their key order (``report compare``)."""
    return json.dumps(value, sort_keys=True, default=str)


def config_diff(configs: list[Mapping[str, Any]], same: Callable[[Any], Any] = as_written
                ) -> dict[str, list[Any]]:
    """The dotted keys whose values are not the same in every config, in the order they first
    appear, with each config's value (:data:`ABSENT` where it has none); two values are the
    same where ``same`` maps them to equal keys."""
    flat = [flatten(config) for config in configs]
    keys = dict.fromkeys(key for one in flat for key in one)
    diff = {}
    for key in keys:
        values = [one.get(key, ABSENT) for one in flat]
        if any(same(v) != same(values[0]) for v in values[1:]):
            diff[key] = values
    return diff
