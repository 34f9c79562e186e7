"""One registry of model families, their traits, and model specs (timm's ``create_model`` style).

Every family is registered beside its builder with :func:`register_family`; the entry carries
what the rest of the framework needs to know of it (does it take a non-linearity schedule, how
Table 4 counts its FLOPs, how its width is solved for a budget), so nothing else tests family
names. A family's fused deploy runner is declared beside it too, in
:mod:`ftbnn_exp.deploy.runners` (deployment never imports a model). Each family is also a
``timm`` model. A :class:`ModelSpec` (family + constructor keyword arguments + package
version) is stored in every checkpoint and export, and :func:`create` rebuilds the model
from it without any config system.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from typing import Any, get_type_hints

from timm.models import is_model, model_entrypoint, register_model
from torch import nn

from ftbnn_exp import plugins
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn import NonLinearitySchedule
from ftbnn_exp.nn.parts import PART_KINDS
from ftbnn_exp.registries import check_free
from ftbnn_exp.validation import check_annotation

Builder = Callable[..., nn.Module]
NonLinearityLabel = Callable[[Mapping[str, Any], str], str]
"""``(kwargs, schedule name) -> the non-linearity the model really uses`` (reports)."""
BINARY_PARTS = {"binarizer": "binarizer", "scaling": "scaling"}
"""The ``parts`` of a family whose binary blocks take ``binarizer`` and ``scaling``."""
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _package_version() -> str:
    try:
        return version("ftbnn-exp")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class SolvedWidth:
    """How Table 4's width solver ("the widths of networks are adjusted to meet the budget";
    ``complexity/solver.py``) builds a family whose ``width`` is solved: with the family's own
    builder, at ``width``, the builder's ``arguments`` named here (as the user set them, else
    their defaults), a default schedule and ImageNet's input, whose budget it measures.
    ``problem(width, **those arguments)`` says why a width cannot be built (None: it can), so
    only buildable widths are tried; ``table4``: ``budget=90``/``135`` name Table 4's rows,
    looked up by the arguments ``depth`` and ``groups``."""

    arguments: tuple[str, ...] = ()
    problem: Callable[..., str | None] | None = None
    table4: bool = False


@dataclass(frozen=True)
class Family:
    """A model family and its traits: ``takes_schedule``, the builder's first argument is a
    :class:`NonLinearitySchedule`; ``convention``, how its FLOPs are counted by default;
    ``solved_width``, a :class:`SolvedWidth`: its ``width`` argument, when unset, is solved for
    a budget (Table 4); ``nonlinearity_label``, what reports call its non-linearity; ``parts``,
    the builder arguments that name a registered part, each with its kind
    (``{"binarizer": "binarizer", "scaling": "scaling"}``; ``{}``: it takes none): declared
    once, read by the config check and by Table 1's marks (None, undeclared: its marks are
    unknown, "?")."""

    name: str
    builder: Builder
    takes_schedule: bool = False
    convention: str = "macs"
    solved_width: SolvedWidth | None = None
    nonlinearity_label: NonLinearityLabel | None = None
    parts: Mapping[str, str] | None = field(default=None, hash=False)

    @cached_property
    def parameters(self) -> Mapping[str, inspect.Parameter]:
        """The builder's parameters: what every check and default of its arguments reads."""
        return inspect.signature(self.builder).parameters

    def values(self, kwargs: Mapping[str, Any], names: tuple[str, ...]
               ) -> tuple[tuple[str, Any], ...]:
        """``(name, value)`` of each of ``names``: given in ``kwargs``, else the builder's
        default."""
        return tuple((name, kwargs.get(name, self.parameters[name].default)) for name in names)

    def __post_init__(self) -> None:
        for argument, kind in (self.parts or {}).items():
            if argument not in self.parameters or kind not in PART_KINDS:
                raise InvalidArgument(f"model family {self.name}: parts={{{argument!r}: "
                                      f"{kind!r}}} must name an argument of its builder and "
                                      f"a part kind ({', '.join(PART_KINDS)})")

    def part_names(self, kwargs: Mapping[str, Any]) -> dict[str, tuple[str, Any]] | None:
        """``argument -> (kind, the part it names)`` for the declared :attr:`parts`: given in
        ``kwargs``, else the builder's default; None when the family declares none."""
        if self.parts is None:
            return None
        values = dict(self.values(kwargs, tuple(self.parts)))
        return {argument: (kind, values[argument]) for argument, kind in self.parts.items()}

    def check_arguments(self, kwargs: Mapping[str, Any], prefix: str = "",
                        hidden: tuple[str, ...] = (), complete: bool = True) -> None:
        """Each key an argument of the builder, of its annotated type (``int``, ``float``,
        ``bool``, ``str`` and their unions with None); ``complete``: every argument without a
        default given. One-line :class:`InvalidArgument` naming ``<prefix><key>``."""
        parameters = self.parameters
        hints = get_type_hints(self.builder)
        for key, value in kwargs.items():
            if key not in parameters:
                allowed = ", ".join(p for p in parameters if p not in hidden)
                raise InvalidArgument(f"{prefix}{key} is not an argument of model family "
                                      f"{self.name}; allowed: {allowed}")
            if key in hints:
                check_annotation(f"{prefix}{key}", value, hints[key])
        missing = [name for name, p in parameters.items()
                   if p.default is inspect.Parameter.empty and name not in kwargs]
        if complete and missing:
            raise InvalidArgument(f"model family {self.name} needs {', '.join(missing)}")

    def label(self, kwargs: Mapping[str, Any], schedule_name: str) -> str:
        if self.nonlinearity_label is not None:
            return self.nonlinearity_label(kwargs, schedule_name)
        return schedule_name if self.takes_schedule else "none"


FAMILIES: dict[str, Family] = {}


def register_family(name: str, replace: bool = False, **traits: Any
                    ) -> Callable[[Builder], Builder]:
    """Register ``builder`` as family ``name`` (and as the timm model ``name``); a name taken
    by a family or a timm model is refused in one line unless ``replace=True``."""

    def register(builder: Builder) -> Builder:
        family = Family(name, builder, **traits)
        _check_solved_width(family)
        taken = FAMILIES.get(name)
        check_free("model family registry", name, taken and taken.builder, builder, replace,
                   "register_family(..., replace=True)")
        _register_timm(name, builder.__module__, {}, replace or taken is not None)
        FAMILIES[name] = family
        return builder

    return register


def _check_solved_width(family: Family) -> None:
    """A family whose width is solved says how the solver builds it, and its builder takes a
    width; one line otherwise."""
    declared = family.solved_width
    if declared is None:
        return
    if not isinstance(declared, SolvedWidth):
        raise ValueError(f"register_family({family.name!r}): solved_width={declared!r} does not "
                         f"say how the width solver builds the family; allowed: "
                         f"solved_width=SolvedWidth(arguments=..., problem=...)")
    missing = [n for n in ("width", *declared.arguments) if n not in family.parameters]
    if missing:
        raise ValueError(f"register_family({family.name!r}): solved_width builds at a width "
                         f"with {', '.join(missing)}, which the builder does not take")


def register_variant(name: str, family: str, replace: bool = False, **defaults: Any) -> None:
    """A timm name for a family with preset arguments, e.g. ``ftbnn_resnet34``; a taken timm
    name is refused in one line unless ``replace=True``."""
    _register_timm(name, FAMILIES[family].builder.__module__, {"family": family, **defaults},
                   replace)


def _register_timm(name: str, module: str, preset: Mapping[str, Any], replace: bool) -> None:
    """``name`` as a timm model; a name timm already knows is refused unless ``replace`` or it
    is this entry defined again (timm's own overwrite warning is then expected, not shown)."""
    if is_model(name):  # our entries are named module.name (below)
        how = "register_variant" if "family" in preset else "register_family"
        check_free("timm model registry", name, model_entrypoint(name), f"{module}.{name}",
                   replace, f"{how}(..., replace=True)")
    family = preset.get("family", name)
    defaults = {k: v for k, v in preset.items() if k != "family"}

    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        if pretrained:
            raise InvalidArgument(f"{name} has no pretrained weights; use pretrained=False")
        for key in _TIMM_ONLY_KWARGS:
            kwargs.pop(key, None)
        return create(ModelSpec(family, {**defaults, **kwargs}))

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = module
    entry.__doc__ = f"timm entry of ftbnn_exp's {family} ({defaults or 'no presets'})."
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f"Overwriting {re.escape(name)} in registry")
        register_model(entry)


def part_arguments() -> dict[str, str]:
    """Every registered family's declared part arguments with their kind (``binarizer ->
    binarizer``, ...): the model keys whose values are registered part names, for tab
    completion and run names."""
    return {argument: kind for entry in FAMILIES.values() for argument, kind in
            (entry.parts or {}).items()}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise InvalidArgument(f"model family {name!r} is not registered; allowed: "
                              f"{', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


@dataclass(frozen=True)
class ModelSpec:
    """What builds a model: the family, its keyword arguments (plain values; a schedule as its
    ``to_dict``), the plug-in modules it needs (they register the family or a placement; the
    user loads them, :mod:`ftbnn_exp.plugins`), and the package version that wrote it."""

    family: str
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    imports: tuple[str, ...] = ()
    version: str = field(default_factory=_package_version)

    def to_dict(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        if isinstance(kwargs.get("schedule"), NonLinearitySchedule):
            kwargs["schedule"] = kwargs["schedule"].to_dict()
        return {"family": self.family, "kwargs": kwargs, "imports": list(self.imports),
                "version": self.version}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """A spec from its stored form (a file's: every field's type checked, one line)."""
        kwargs = data.get("kwargs", {}) if isinstance(data, Mapping) else None
        imports = data.get("imports", ()) if isinstance(data, Mapping) else None
        if not (isinstance(data, Mapping) and isinstance(data.get("family"), str)
                and isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)
                and isinstance(imports, list | tuple)
                and all(isinstance(m, str) for m in imports)):
            raise InvalidArgument("model_spec must be {family: str, kwargs: {str: value}, "
                                  "imports: [str]}")
        return cls(data["family"], dict(kwargs), tuple(imports),
                   str(data.get("version", "unknown")))


def create(spec: ModelSpec | Mapping[str, Any], source: str = "the model spec") -> nn.Module:
    """The (untrained) model of ``spec``. Its plug-ins (``imports``) must have been loaded by
    the user (:mod:`ftbnn_exp.plugins`): a spec read from a file imports nothing."""
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec.from_dict(spec)
    plugins.require(spec.imports, source)
    entry = family(spec.family)
    kwargs = dict(spec.kwargs)
    if entry.takes_schedule:
        kwargs["schedule"] = NonLinearitySchedule.from_value(kwargs.get("schedule"))
    entry.check_arguments(kwargs)
    return entry.builder(**kwargs)
