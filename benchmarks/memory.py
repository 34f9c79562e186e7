"""Bytes autograd saves for backward per image: our layers vs Appendix E's (target ≤ 0.6×),
and under bf16 autocast (``trainer=gpu``'s bf16-mixed) the lean binary block vs the plain graph.

Counted with ``torch.autograd.graph.saved_tensors_hooks``, each storage once; per image is the
growth from batch 1 to batch 2, so weight-sized tensors cancel out.
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch
from torch import nn

from benchmarks.common import baseline, machine, verdict
from ftbnn_exp.models.ftbnn import BasicBlock
from ftbnn_exp.nn import make_nonlinear_module
from ftbnn_exp.nn.lean import saved_bytes
from ftbnn_exp.nn.reference import with_appendix_e_layers

TARGET = 0.6


def per_image(model: nn.Module, shape: tuple[int, ...], bf16: bool = False) -> float:
    model.train()
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    with autocast:
        one, two = (saved_bytes(lambda n=n: model(torch.randn(n, *shape, requires_grad=True)))
                    for n in (1, 2))
    return float(two - one)


def without_lean(model: nn.Module) -> nn.Module:
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if hasattr(module, "lean_backward"):
            module.lean_backward = False
    return plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    print(f"memory saved for backward per image ({machine()})")
    block = BasicBlock(64, 64, 1, make_nonlinear_module("fprelu", 64))
    model = baseline(args.image_size)
    stage1 = args.image_size // 4
    for name, ours, shape in ((f"one FTBNN block (64×{stage1}×{stage1})", block,
                               (64, stage1, stage1)),
                              (f"FTBNN-18 baseline at {args.image_size} px", model,
                               (3, args.image_size, args.image_size))):
        mine = per_image(ours, shape)
        theirs = per_image(with_appendix_e_layers(ours), shape)
        print(f"  {name:34s} ours {mine / 2**20:8.2f} MiB   Appendix E {theirs / 2**20:8.2f} MiB"
              f"   ratio {verdict(mine / theirs, TARGET, higher_is_better=False)}")
    print("under bf16 autocast (trainer=gpu's bf16-mixed; the same count on the CPU)")
    for name, ours, shape in ((f"one FTBNN block (64×{stage1}×{stage1})", block,
                               (64, stage1, stage1)),
                              (f"FTBNN-18 baseline at {args.image_size} px", model,
                               (3, args.image_size, args.image_size))):
        lean, plain = per_image(ours, shape, bf16=True), per_image(without_lean(ours), shape,
                                                                   bf16=True)
        print(f"  {name:34s} lean {lean / 2**20:8.2f} MiB   plain graph {plain / 2**20:8.2f} "
              f"MiB   saved {(plain - lean) / 2**20:.2f} MiB per image ({lean / plain:.3f}×)")


if __name__ == "__main__":
    main()
