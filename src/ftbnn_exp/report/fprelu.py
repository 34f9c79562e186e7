"""Table 2: the learned FPReLU slopes of a trained model, per binary conv."""

from __future__ import annotations

import torch
from torch import nn

from ftbnn_exp.errors import UserError
from ftbnn_exp.nn import FPReLU


def _slopes(values: torch.Tensor) -> str:
    v = values.detach().flatten()
    return f"{v.mean():.2f} [{v.min():.2f} {v.max():.2f}]"


def _cells(module: nn.Module) -> tuple[str, str]:
    if isinstance(module, FPReLU):
        return _slopes(module.negative), _slopes(module.positive)
    if isinstance(module, nn.PReLU):
        return f"PReLU {_slopes(module.weight)}", "1 (PReLU)"
    return {"ReLU": "ReLU", "Identity": "identity"}.get(type(module).__name__,
                                                         type(module).__name__), ""


def fprelu_table(model: nn.Module) -> str:
    """One line per binary block: ``BConv<stage>-<block> 3×3, C``, then its non-linear
    module: FPReLU's negative and positive slopes as mean [min max], PReLU's slope, or the
    parameter-free module placed there (ReLU, identity). Read off the rebuilt model, so any
    placement, a plug-in's included, is shown as the model has it."""
    stages = getattr(model, "stages", None)
    if stages is None or not all(hasattr(block, "nonlinear") for s in stages for block in s):
        raise UserError(f"{type(model).__name__} has no binary blocks (stages of blocks with "
                        f"a non-linear module)")
    lines = [f"{'layer':<22} {'negative':<22} {'positive':<22}"]
    for s, stage in enumerate(stages):
        for b, block in enumerate(stage):
            weight = block.conv.weight
            name = f"BConv{s + 1}-{b + 1} {weight.shape[2]}x{weight.shape[3]}, {weight.shape[0]}"
            negative, positive = _cells(block.nonlinear)
            lines.append(f"{name:<22} {negative:<22} {positive:<22}")
    return "\n".join(lines)
