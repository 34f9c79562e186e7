"""FLOPs, BOPs, params and budget, measured by tracing one forward pass (Fig. 3, Table 4).

Every leaf module is hooked; the counts come from the shapes it actually produced, so any model,
a user's new one included, is counted without a per-architecture formula.

BOPs
    Multiply-adds of binary convolutions (:class:`~ftbnn_exp.nn.BinaryConv2d`), **doubled for a
    binary conv whose input lies in {0, 1}**, i.e. follows a ReLU: Appendix B's Eq. 6 needs two
    popcounts where XNOR-count needs one. The rule is decided from the traced input itself
    (no negative entry), not from the model's structure.
Params
    Real-valued parameters + binary-conv weights / 32 (Table 4's caption). BN and FPReLU count
    their 2 learnable values per channel; running statistics are buffers and not counted.
Budget
    FLOPs + BOPs / 64 (Fig. 3 right); :meth:`Complexity.budget_at` prices BOPs at another rate
    (a CPU's measured one: ``python -m ftbnn_exp.deploy rate``).
FLOPs, under one of two conventions
    ``macs``
        Multiply-adds of real-valued convolutions and FC layers only. The convention of Bi-Real
        Net and ReActNet, used for their published totals (Bi-Real-18 ≈ 1.63 × 10⁸ budget).
        Leaves out BN, pooling, activations and additions.
    ``paper``
        ``macs`` plus 2 operations per element of every BN output and k² per output element of a
        k×k average pool. The convention that fits Table 4's FLOPs column (our inference, see
        ``docs/table4-complexity.md``). Still leaves out sign, ReLU/PReLU/FPReLU,
        residual additions, max-pool and global average pooling.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ftbnn_exp.nn import BinaryConv2d, part_of

CONVENTIONS: tuple[str, ...] = ("macs", "paper")
BINARY_PARAMS_PER_REAL = 32
BOPS_PER_FLOP = 64


@dataclass
class LayerCount:
    """One traced call of a leaf module (per image)."""

    name: str
    module: str
    kind: Literal["real", "binary"]
    output_shape: tuple[int, ...]
    macs: int = 0
    flops: int = 0
    bops: int = 0
    doubled: bool = False
    params_fp: int = 0
    params_binary: int = 0


@dataclass
class Complexity:
    """Totals per image, in plain numbers (not millions)."""

    convention: str
    layers: list[LayerCount] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def bops(self) -> int:
        return sum(layer.bops for layer in self.layers)

    @property
    def params_fp(self) -> int:
        return sum(layer.params_fp for layer in self.layers)

    @property
    def params_binary(self) -> int:
        return sum(layer.params_binary for layer in self.layers)

    @property
    def params(self) -> float:
        return self.params_fp + self.params_binary / BINARY_PARAMS_PER_REAL

    @property
    def budget(self) -> float:
        return self.flops + self.bops / BOPS_PER_FLOP

    def budget_at(self, rate: float) -> float:
        """FLOPs + BOPs / ``rate``: the budget where ``rate`` BOPs cost one FLOP (the paper's
        64, or a CPU's measured rate, ``python -m ftbnn_exp.deploy rate``). At 64 it is
        :attr:`budget` exactly."""
        return self.flops + self.bops / rate

    def totals(self) -> dict[str, float | int | str]:
        return {"flops": self.flops, "bops": self.bops, "params": self.params,
                "params_fp": self.params_fp, "params_binary": self.params_binary,
                "budget": self.budget, "convention": self.convention}

    def to_dict(self) -> dict:
        return {**self.totals(), "layers": [asdict(layer) for layer in self.layers]}


def _conv_macs(module: nn.Conv2d, output: Tensor) -> int:
    kernel_h, kernel_w = module.kernel_size
    per_output = (module.in_channels // module.groups) * kernel_h * kernel_w
    return output[0].numel() * per_output


def _own_params(module: nn.Module) -> tuple[int, int]:
    """(real, binary) parameter counts of ``module`` itself, not its children."""
    binary = module.weight.numel() if isinstance(module, BinaryConv2d) else 0
    total = sum(p.numel() for p in module.parameters(recurse=False))
    return total - binary, binary


def count_layer(name: str, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor,
                convention: str) -> LayerCount | None:
    """The row of one traced leaf call, or None for a module that neither computes what we
    count nor holds parameters."""
    params_fp, params_binary = _own_params(module)
    row = LayerCount(name, type(module).__name__,
                     "binary" if isinstance(module, BinaryConv2d) else "real",
                     tuple(output.shape[1:]), params_fp=params_fp, params_binary=params_binary)
    if isinstance(module, BinaryConv2d):
        row.macs = _conv_macs(module, output)
        row.doubled = bool(inputs[0].min() >= 0)
        row.bops = row.macs * (2 if row.doubled else 1)
    elif isinstance(module, nn.Conv2d):
        row.macs = row.flops = _conv_macs(module, output)
    elif isinstance(module, nn.Linear):
        row.macs = row.flops = output[0].numel() * module.in_features
    elif convention == "paper" and isinstance(module, nn.modules.batchnorm._BatchNorm):
        row.flops = 2 * output[0].numel()
    elif convention == "paper" and isinstance(module, nn.AvgPool2d):
        kernel = module.kernel_size
        area = kernel * kernel if isinstance(kernel, int) else kernel[0] * kernel[1]
        row.flops = area * output[0].numel()
    entry = part_of(module)
    if entry is not None:  # what a registered part adds (a scale map), batch of one
        row.flops += entry.flops(module, inputs, output)
    if not (row.macs or row.flops or row.params_fp or row.params_binary):
        return None
    return row


@contextmanager
def _tracing(model: nn.Module, convention: str, rows: list[LayerCount]) -> Iterator[None]:
    handles = []
    seen: set[str] = set()
    for name, module in model.named_modules():
        # leaves, and parts with children of their own (a gated binary conv's FCs)
        if next(module.children(), None) is not None and part_of(module) is None:
            continue

        def hook(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor,
                 name: str = name) -> None:
            row = count_layer(name, mod, inputs, output, convention)
            if row is not None:
                if name in seen:  # a module called twice owns its parameters once
                    row.params_fp = row.params_binary = 0
                seen.add(name)
                rows.append(row)

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_complexity(model: nn.Module, input_shape: tuple[int, int, int],
                     convention: str = "macs") -> Complexity:
    """Trace one eval-mode forward pass of a batch of one image of ``input_shape`` (C, H, W).

    The input is random normal: binary convs behind a ReLU see {0, 1} whatever the values, and
    no other binarized input is free of negatives.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r} is unknown; allowed: {', '.join(CONVENTIONS)}")
    rows: list[LayerCount] = []
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        image = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad(), _tracing(model, convention, rows):
            model(image.to(device))
    finally:
        model.train(was_training)
    _count_untraced_params(model, rows)
    return Complexity(convention, rows)


def _count_untraced_params(model: nn.Module, rows: list[LayerCount]) -> None:
    """Parameters of modules the forward pass never called still belong to the model."""
    traced = {row.name for row in rows}
    for name, module in model.named_modules():
        params_fp, params_binary = _own_params(module)
        if name not in traced and (params_fp or params_binary):
            rows.append(LayerCount(name, type(module).__name__,
                                   "binary" if params_binary else "real", (),
                                   params_fp=params_fp, params_binary=params_binary))
