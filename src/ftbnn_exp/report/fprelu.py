"""Table 2: the learned FPReLU slopes of a trained model, per binary conv."""

from __future__ import annotations

from torch import nn

from ftbnn_exp.errors import UserError
from ftbnn_exp.nn import part_of


def _cells(module: nn.Module) -> tuple[str, str]:
    """Table 2's cells from the module's registered part (its class name if it is none)."""
    entry = part_of(module)
    return entry.cells(module) if entry else (type(module).__name__, "")


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
