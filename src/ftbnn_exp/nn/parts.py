"""One registry of the parts of a binary block, each with the traits the framework asks of it.

A binary block is ``binarizer → binary conv (weight binarizer and scaling) → BN → + shortcut →
non-linear module``. Table 1 of the paper sets FTBNN against methods that change exactly these
parts (ReActNet's RSign and RPReLU, Bi-Real's ApproxSign, XNOR-Net's scaling, ...), so each is
registered beside its class with :func:`register_part` and declares:

- ``label``: what reports call it (Table 2's cells, see ``describe``);
- ``lean_exact``: whether :mod:`ftbnn_exp.nn.lean`'s int8-code path gives the plain graph's
  outputs and gradients for it (only then is that path taken);
- ``fused``: its form in the deploy output step (:class:`FusedActivation` for a non-linear
  module, :class:`FusedBinarizer` for a binarizer, a per-channel scale for a scaling) or None,
  which makes the fused runner refuse it in one line and run the per-conv path instead;
- ``flops``: the real-valued FLOPs it adds per forward (scale maps) for the counter, beyond
  those of its own conv and linear children, which the counter sees as layers;
- ``table1``: the strategies of the paper's Table 1 it brings (``GA``: a gradient
  approximation other than the clipped STE; ``Scaling``: explicit scaling factors), so that
  Table 1's marks are read off a run's parts, never typed per row;
- ``real_input``: a scaling that also needs the block's real-valued input (XNOR-Net's K,
  Real-to-Bin's gating) is called as ``conv(binarized, real)``;
- ``progress``: a part whose forward or backward follows training progress (IR-Net's EDE):
  training sets its ``progress`` attribute to the fraction of training done;
- ``spatial``: a scaling whose factors span the output's height and width (XNOR-Net++'s
  α ⊗ β ⊗ γ) is given its conv's ``output_size=(H, W)`` by the model that builds it;
- ``decay``: whether the part's own learnable scales or thresholds (its direct parameters,
  not a binary conv's latent weights, not child layers) get the optimizer's weight decay.
  False by default, for every kind and a plug-in's part alike: a per-channel scale,
  threshold or slope pulled towards 0 changes what the part computes (Γ → 0, RSign's α → 0),
  and none of the methods' papers states a decay on them. The package's non-linear modules
  with parameters (FPReLU, PReLU, RPReLU) declare it, keeping the real weights' decay
  (FTBNN's slopes: the paper is silent, and Table 3's training stays as it was).

A module's part is looked up by its exact class (:func:`part_of`): a subclass that is not
registered itself has no traits, so it never inherits a lean path or a fused form that would
be wrong for it. Nothing outside this registry tests a part's type or name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.registries import check_free, qualified_name
from ftbnn_exp.validation import keyword_arguments

PART_KINDS = ("binarizer", "scaling", "nonlinear")
"""``binarizer``: the activation binarizer in front of a binary conv; ``scaling``: the binary
conv itself (weight binarizer and how its output is scaled); ``nonlinear``: the explicit
module after a block."""
FRAMEWORK_ARGUMENTS = {
    "binarizer": ("channels", "bound", "mode"),
    "scaling": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "groups",
                "bound", "output_size"),
    "nonlinear": ("channels",),
}
"""What the framework gives every part of a kind itself; the rest are the user's options."""


@dataclass(frozen=True)
class FusedBinarizer:
    """A binarizer as the deploy packing step computes it: the sign of ``x − threshold`` per
    channel (``threshold`` None: of ``x`` itself, ``torch.sign`` with 0 kept)."""

    threshold: Tensor | None = None


FusedForm = Callable[[nn.Module], Any]
Flops = Callable[[nn.Module, tuple[Tensor, ...], Tensor], int]


def mean_range(values: Tensor) -> str:
    """Learned per-channel values as Table 2 prints them: mean [min max]."""
    v = values.detach().flatten()
    return f"{v.mean():.2f} [{v.min():.2f} {v.max():.2f}]"


def no_flops(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    """Parameter-light element-wise parts: left out of FLOPs, as the paper's counting does."""
    return 0


@dataclass(frozen=True)
class Part:
    """A registered part and its traits (see the module docstring)."""

    kind: str
    name: str
    cls: type[nn.Module]
    label: str
    lean_exact: bool = False
    fused: FusedForm | None = None
    flops: Flops = no_flops
    describe: Callable[[nn.Module], tuple[str, str]] | None = None
    make: Callable[..., nn.Module] | None = None
    table1: tuple[str, ...] = ()
    real_input: bool = False
    progress: bool = False
    spatial: bool = False
    decay: bool = False

    def build(self, *args: Any, **kwargs: Any) -> nn.Module:
        """A new module of this part (``make`` where the class's own signature differs from
        its kind's: a non-linear module is made from its channel count)."""
        return (self.make or self.cls)(*args, **kwargs)

    def options(self) -> tuple[str, ...]:
        """The keyword arguments a user may give this part (``model.binarizer_options``,
        ``model.scaling_options``): its constructor's, up the classes its ``**kwargs`` pass
        to (:func:`~ftbnn_exp.validation.keyword_arguments`), less those every part of its kind
        is given by the framework."""
        names, _ = keyword_arguments(self.make or self.cls)
        return tuple(n for n in names if n not in FRAMEWORK_ARGUMENTS[self.kind])

    def check_options(self, options: Mapping[str, Any], key: str) -> None:
        """A one-line error naming the first of ``options`` this part does not take."""
        allowed = self.options()
        for name in options:
            if name not in allowed:
                raise InvalidArgument(f"{key}.{name} is not an option of {self.kind} "
                                      f"{self.name!r}; allowed: {', '.join(allowed) or 'none'}")

    def cells(self, module: nn.Module) -> tuple[str, str]:
        """Table 2's two cells for ``module`` (negative, positive side)."""
        return self.describe(module) if self.describe else (self.label, "")


PARTS: dict[str, dict[str, Part]] = {kind: {} for kind in PART_KINDS}
_BY_CLASS: dict[type, Part] = {}


def register_part(kind: str, name: str, *, label: str | None = None, replace: bool = False,
                  **traits: Any) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Register the decorated class as part ``name`` of ``kind``; ``traits`` as :class:`Part`.
    A kind's constructor: a binarizer ``(channels, bound=)``; a scaling that of
    :class:`~ftbnn_exp.nn.BinaryConv2d`; a non-linear module ``(channels)`` (``make=``).
    A taken name, or a class already registered as another part, is refused in one line
    unless ``replace=True`` (:mod:`ftbnn_exp.registries`)."""
    if kind not in PART_KINDS:
        raise ValueError(f"part kind {kind!r}; allowed: {', '.join(PART_KINDS)}")

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        entry = Part(kind, name, cls, label or cls.__name__, **traits)
        taken = PARTS[kind].get(name)
        check_free(f"{kind} part registry", name, taken and taken.cls, cls, replace,
                   "register_part(..., replace=True)")
        other = _BY_CLASS.get(cls)
        if other is not None and (other.kind, other.name) != (kind, name) and not replace:
            raise InvalidArgument(f"{kind} part registry: {qualified_name(cls)} is already "
                                  f"the {other.kind} part {other.name!r}; a class is one part "
                                  f"(register a subclass), or register_part(..., "
                                  f"replace=True)")
        PARTS[kind][name] = entry
        _BY_CLASS[cls] = entry
        return cls

    return register


def part(kind: str, name: str, key: str | None = None) -> Part:
    """The registered part ``name`` of ``kind``; a one-line error naming ``key`` otherwise."""
    if name not in PARTS[kind]:
        what = "non-linear module" if kind == "nonlinear" else kind
        raise InvalidArgument(f"{key or kind}={name!r} is not a registered {what}; allowed: "
                              f"{', '.join(sorted(PARTS[kind]))}")
    return PARTS[kind][name]


def part_of(module: nn.Module) -> Part | None:
    """The part ``module`` is an instance of (its exact class), or None."""
    return _BY_CLASS.get(type(module))


def fused_form(module: nn.Module, where: str, user: str = "the fused runner") -> Any:
    """``module``'s deploy form; a one-line :class:`InvalidArgument` naming it, where it is
    and who asked (``user``) otherwise."""
    entry = part_of(module)
    if entry is None or entry.fused is None:
        name = f"part {entry.name!r}" if entry else "not a registered part"
        raise InvalidArgument(f"{user} has no form for {type(module).__name__} at {where} "
                              f"({name})")
    return entry.fused(module)


def lean_exact(*modules: nn.Module) -> bool:
    """Every module is a registered part whose lean path is exact."""
    return all((entry := part_of(m)) is not None and entry.lean_exact for m in modules)


def undecayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The direct parameters of every registered part that does not declare ``decay``, a
    plug-in's included (a binary conv's latent weight among them is the optimizer's own
    group: :func:`~ftbnn_exp.training.optim.parameter_groups`)."""
    found = []
    for module in model.modules():
        entry = part_of(module)
        if entry is not None and not entry.decay:
            found += list(module.parameters(recurse=False))
    return found


def has_trait(module: nn.Module, trait: str) -> bool:
    """Whether ``module`` is a registered part with the boolean ``trait`` set."""
    entry = part_of(module)
    return entry is not None and bool(getattr(entry, trait))
