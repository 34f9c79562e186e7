"""Table 2: the learned FPReLU slopes of a trained model, per binary conv."""

from __future__ import annotations

import re

import torch

from ftbnn_exp.errors import UserError
from ftbnn_exp.nn import NonLinearitySchedule

_BLOCK = re.compile(r"^model\.stages\.(\d+)\.(\d+)\.conv\.weight$")


def _slopes(values: torch.Tensor) -> str:
    v = values.flatten()
    return f"{v.mean():.2f} [{v.min():.2f} {v.max():.2f}]"


def fprelu_table(checkpoint: dict) -> str:
    """One line per binary conv: ``BConv<stage>-<block> 3×3, C``, negative and positive slopes
    as mean [min max], or the parameter-free module placed there (ReLU, identity)."""
    state = checkpoint["state_dict"]
    nonlinearity = checkpoint["ftbnn_exp"].get("config", {}).get("nonlinearity", {})
    schedule = NonLinearitySchedule(nonlinearity.get("stage_end", "relu"),
                                    nonlinearity.get("other", "fprelu"),
                                    nonlinearity.get("placement", "stage_end"),
                                    nonlinearity.get("period", 4))
    blocks = sorted((int(m[1]), int(m[2]), key) for key in state if (m := _BLOCK.match(key)))
    if not blocks:
        raise UserError("the checkpoint's model has no binary blocks (model.stages.*.*.conv)")
    last_in_stage = {s: max(b for s2, b, _ in blocks if s2 == s) for s, _, _ in blocks}
    lines = [f"{'layer':<22} {'negative':<22} {'positive':<22}"]
    for index, (stage, block, key) in enumerate(blocks):
        weight = state[key]
        kernel = f"{weight.shape[2]}x{weight.shape[3]}"
        name = f"BConv{stage + 1}-{block + 1} {kernel}, {weight.shape[0]}"
        prefix = f"model.stages.{stage}.{block}.nonlinear."
        if prefix + "negative" in state:
            cells = (_slopes(state[prefix + "negative"]), _slopes(state[prefix + "positive"]))
        elif prefix + "weight" in state:
            cells = (f"PReLU {_slopes(state[prefix + 'weight'])}", "1 (PReLU)")
        else:
            kind = schedule.kind_for(index, block == last_in_stage[stage])
            cells = ({"relu": "ReLU"}.get(kind, kind), "")
        lines.append(f"{name:<22} {cells[0]:<22} {cells[1]:<22}")
    return "\n".join(lines)
