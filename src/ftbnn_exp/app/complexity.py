"""``python -m ftbnn_exp.complexity <training overrides> [format=table|json]``: the command lives
here, in the application layer, since it composes a training config; the library package
``ftbnn_exp.complexity`` only forwards to it from its ``__main__``.

Counts the model a training command would build, at that command's data size, and prints a
per-layer table with totals (beside Table 4's row where one matches), or one JSON object.
``budget_rate=R`` prices BOPs at R per FLOP (a CPU's measured rate, ``python -m
ftbnn_exp.deploy rate``) beside the paper's 64, and solves a derived model's width at it.
"""

from __future__ import annotations

import json
import sys

from ftbnn_exp.app.build import (
    build_datamodule,
    convention_for,
    measure,
    model_spec,
    resolve_width,
)
from ftbnn_exp.app.config import check_overrides, compose_config, validate
from ftbnn_exp.complexity.counter import BOPS_PER_FLOP, Complexity
from ftbnn_exp.errors import UserError
from ftbnn_exp.paper import PaperTable4Row

FORMATS = ("table", "json")
HELP = """\
usage: python -m ftbnn_exp.complexity [group=option ...] [key=value ...] [format=table|json]

Counts the model that the same training command (python -m ftbnn_exp ...) would build, at that
command's data size, without training: MACs, FLOPs, BOPs and params per layer and in total, the
budget (FLOPs + BOPs/64; convention=macs|paper), the width the solver picks for a derived
model's budget, and Table 4's row where one matches. budget_rate=R (default 64, the paper's)
adds the budget at FLOPs + BOPs/R and solves the width at it: R from `python -m
ftbnn_exp.deploy rate` gives the model that meets the budget on that CPU. format=json prints
one JSON object.

examples:
  python -m ftbnn_exp.complexity
  python -m ftbnn_exp.complexity model=derived depth=34 groups=5 budget=135 data=imagenet
  python -m ftbnn_exp.complexity model=derived depth=34 groups=5 budget_rate=13
  python -m ftbnn_exp.complexity model=bireal depth=34 format=json"""


def _millions(value: float) -> str:
    return f"{value / 1e6:.2f}M"


def rate_line(complexity: Complexity, rate: float) -> str:
    """The budget at ``rate`` beside the paper's /64."""
    return (f"budget at budget_rate={rate:g}: {_millions(complexity.budget_at(rate))} (FLOPs + "
            f"BOPs/{rate:g}) beside the paper's {_millions(complexity.budget)} (FLOPs + "
            f"BOPs/{BOPS_PER_FLOP})")


def render_table(complexity: Complexity, paper: PaperTable4Row | None,
                 rate: float = BOPS_PER_FLOP) -> str:
    header = (f"{'layer':<28} {'kind':<6} {'output':<14} {'MACs':>13} {'FLOPs':>12} "
              f"{'BOPs':>13} {'x2':>3} {'params':>10}")
    lines = [header, "-" * len(header)]
    for row in complexity.layers:
        params = row.params_fp + row.params_binary / 32
        shape = "x".join(str(d) for d in row.output_shape) or "-"
        lines.append(f"{row.name:<28} {row.kind:<6} {shape:<14} {row.macs:>13,} "
                     f"{row.flops:>12,} {row.bops:>13,} {'yes' if row.doubled else '':>3} "
                     f"{params:>10,.0f}")
    totals = (f"FLOPs {_millions(complexity.flops)}  BOPs {_millions(complexity.bops)}  "
              f"Params {_millions(complexity.params)} (fp {complexity.params_fp:,} + binary "
              f"{complexity.params_binary:,}/32)  budget {_millions(complexity.budget)} "
              f"[convention={complexity.convention}]")
    lines += ["", totals]
    if rate != BOPS_PER_FLOP:
        lines.append(rate_line(complexity, rate))
    if paper is not None:
        lines.append(
            f"paper (Table 4, ~{paper.budget}M, L{paper.depth}, G{paper.groups}; reference): "
            f"FLOPs {paper.flops_m}M  BOPs {paper.bops_m:g}M  Params {paper.params_m}M  "
            f"budget {paper.budget_m:.1f}M")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):  # Hydra's override parser would refuse them
        print(HELP)
        return 0
    fmt = "table"
    overrides = []
    for arg in argv:
        if arg.startswith("format="):
            fmt = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    try:
        if fmt not in FORMATS:
            raise UserError(f"format={fmt} is not allowed; allowed: {', '.join(FORMATS)}")
        check_overrides(overrides)
        cfg = compose_config(overrides)
        specs = validate(cfg)
        data = build_datamodule(cfg).spec
        rate = cfg.get("budget_rate", BOPS_PER_FLOP)
        choice = resolve_width(specs, cfg.budget, rate)
        spec = model_spec(cfg, specs, data, choice)
        width = spec.kwargs.get("width")
        complexity = measure(spec, data, convention_for(cfg, specs))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paper = choice.paper_row if choice else None
    if fmt == "json":
        print(json.dumps({**complexity.to_dict(), "width": width, "budget_rate": rate,
                          "budget_at_rate": complexity.budget_at(rate)}))
    else:
        if choice:
            print(f"width solver: {choice.describe()}")
        print(render_table(complexity, paper, rate))
    return 0
