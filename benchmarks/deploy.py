"""Bit-packed binary convolutions (C++ kernels) vs PyTorch fp32, one thread, median of ≥ 100
runs after warm-up, fp32 measured in the same process: per layer (targets ≥ 5×) and for the
whole FTBNN baseline at 224 px, batch 1 (target ≥ 3×)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import baseline, median_seconds, verdict
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.layers import FoldedBatchNorm2d, PackedBinaryConv2d, to_inference
from ftbnn_exp.nn import BinaryConv2d, FPReLU

LAYER_TARGET, NETWORK_TARGET = 5.0, 3.0
# (channels, size): ResNet-18's four stages at 224 px; 256 at 14×14 is the headline layer.
STAGES = [(64, 56), (128, 28), (256, 14), (512, 7)]


def median_ms(run: Callable[[], object], repeats: int, warmup: int) -> float:
    return 1e3 * median_seconds(run, repeats, warmup)


def cpu_description() -> str:
    info = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU") if info.exists() else "?"
    return f"{model}; kernel paths: {', '.join(fast.supported_paths())}"


def layer_row(channels: int, size: int, inputs: str, repeats: int) -> tuple[float, float, float]:
    """(fp32 ms, ours ms, packing a float input ms) for a 3×3/1 conv. Ours takes its input
    packed, as the previous binary conv's fused output step leaves it, and includes its own
    fused output step: BN, residual, FPReLU, float output and packing for the next conv."""
    generator = torch.Generator().manual_seed(0)
    conv = BinaryConv2d(channels, channels)
    x = torch.randn(1, channels, size, size, generator=generator)
    x = torch.sign(x.relu() if inputs == "{0,1}" else x)
    weight = torch.sign(conv.weight.detach())
    bn = FoldedBatchNorm2d(channels)
    act = FPReLU(channels)
    kernel = fast.FastBinaryConv(PackedBinaryConv2d.from_conv(conv))
    *planes, counts = kernel.planes(x)
    with torch.no_grad():
        fp32 = median_ms(lambda: F.conv2d(x, weight, padding=1), repeats, 10)
        ours = median_ms(lambda: kernel(x, planes, bn=bn, residual=x, nonlinear=act,
                                        next_groups=1, counts=counts), repeats, 10)
        packing = median_ms(lambda: kernel.planes(x), repeats, 10)
    return fp32, ours, packing


def network_row(repeats: int) -> tuple[float, float]:
    model = baseline(224).eval()
    inference = to_inference(model)
    runner = fast.FastFTBNN(inference)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fp32 = median_ms(lambda: model(x), repeats, 5)
        ours = median_ms(lambda: runner(x), repeats, 5)
        assert torch.equal(runner(x).argmax(1), model(x).argmax(1))
    return fp32, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if fast.kernels() is None:
        raise SystemExit("error: the C++ kernels could not be built here (see the warning)")
    print(f"binary conv 3×3/1, batch 1, 1 thread, median of {args.repeats} ({cpu_description()})")
    print("ours: packed input -> popcount conv -> BN scale/bias + residual + FPReLU -> float "
          "output + packed output for the next conv (packing a float input: own column)")
    rows = [("256→256 14×14", 256, 14, "±1"), ("256→256 14×14", 256, 14, "{0,1}")]
    rows += [(f"stage {c}→{c} {s}×{s}", c, s, "±1") for c, s in STAGES]
    for name, channels, size, inputs in rows:
        fp32, ours, packing = layer_row(channels, size, inputs, args.repeats)
        print(f"  {name:22s} {inputs:5s} fp32 {fp32:7.3f} ms   ours {ours:7.3f} ms   "
              f"{verdict(fp32 / ours, LAYER_TARGET, higher_is_better=True)}   "
              f"(packing a float input {packing:.3f} ms)")
    fp32, ours = network_row(args.repeats)
    print(f"  FTBNN-18 baseline, 224 px   fp32 eager {fp32:7.2f} ms/image   ours {ours:7.2f} "
          f"ms/image   {verdict(fp32 / ours, NETWORK_TARGET, higher_is_better=True)}")


if __name__ == "__main__":
    main()
