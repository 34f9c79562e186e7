"""The one checker of configured values: every spec dataclass and the app's few top-level keys
use it, so a bad value reads the same everywhere (``key=value must be ...``)."""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ftbnn_exp.errors import InvalidArgument

INTEGER = "an integer"
NUMBER = "a finite number"
BOOLEAN = "true or false"
TEXT = "a string"
FRACTION = "a number in [0, 1)"
"""NaN and infinity are never numbers here: ``nan <= 0`` is false, so a NaN would pass every
"positive" check, and an infinite budget sends the width solver on for ever."""


def _yaml(value: Any) -> str:
    """A value as it is written on the command line: null, true, false."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _type_ok(value: Any, kind: str | None) -> bool:
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))
    if kind == FRACTION:
        return _type_ok(value, NUMBER) and 0 <= value < 1
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if kind == TEXT:
        return isinstance(value, str)
    return True


def check_value(key: str, value: Any, kind: str | None = None,
                allowed: Iterable[Any] | None = None, positive: bool = False,
                optional: bool = False) -> None:
    """Raise :class:`InvalidArgument` naming ``key`` when ``value`` is not of ``kind``, not
    one of ``allowed``, or not positive."""
    if value is None:
        if optional:
            return
        shown = f"; allowed: {', '.join(map(_yaml, allowed))}" if allowed is not None else ""
        raise InvalidArgument(f"{key} is required{shown}")
    if not _type_ok(value, kind):
        raise InvalidArgument(f"{key}={value!r} must be {kind}")
    if allowed is not None:
        options = tuple(allowed)
        if value not in options:
            shown = ((None,) if optional else ()) + options
            raise InvalidArgument(f"{key}={value!r} is not allowed; allowed: "
                                  f"{', '.join(_yaml(a) for a in shown)}")
    if positive and value <= 0:
        raise InvalidArgument(f"{key}={value!r} must be positive")


_KINDS = {int: INTEGER, float: NUMBER, bool: BOOLEAN, str: TEXT}


def check_annotation(key: str, value: Any, annotation: Any) -> None:
    """Check ``value`` against a builder's annotation: ``int``, ``float``, ``bool``, ``str``
    and their unions with ``None``; other annotations are the builder's own business."""
    options = (typing.get_args(annotation)
               if typing.get_origin(annotation) in (typing.Union, types.UnionType)
               else (annotation,))
    if value is None and type(None) in options:
        return
    kinds = [_KINDS[o] for o in options if o in _KINDS]
    if len(kinds) != len([o for o in options if o is not type(None)]):
        return
    if not any(_type_ok(value, kind) for kind in kinds):
        raise InvalidArgument(f"{key}={value!r} must be {' or '.join(kinds)}")


def keyword_arguments(target: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """The keyword arguments ``target`` takes, and whether it takes any other keyword too:
    every "options of X" check reads this (a part's options, a ``_target_``'s keys, a
    placement's parameters). A class is read through its ``__init__`` and on up the bases that
    each ``**kwargs`` hands its keywords to, stopping at the first ``__init__`` without one;
    the chain ending in ``**kwargs`` (nothing closes it) takes any keyword."""
    functions = ([c.__dict__["__init__"] for c in target.__mro__ if "__init__" in c.__dict__]
                 if inspect.isclass(target) else [target])
    names: list[str] = []
    for function in functions:
        parameters = inspect.signature(function).parameters.values()
        names += [p.name for p in parameters
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return tuple(dict.fromkeys(names)), False
    return tuple(dict.fromkeys(names)), True
