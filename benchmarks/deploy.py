"""Bit-packed binary convolutions (C++ kernels) vs PyTorch fp32, one thread, median of ≥ 100
runs after warm-up, fp32 measured in the same process in the faster of NCHW and channels_last:
per layer (targets ≥ 5×) and for the whole FTBNN baseline at 224 px, batch 1 (target ≥ 3×)."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from functools import partial
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


def layer_row(channels: int, size: int, inputs: str, repeats: int
              ) -> tuple[float, str, dict[str, float], float]:
    """(fp32 ms, its layout, ours ms per kernel path, packing a float input ms) for a 3×3/1
    conv. fp32 is the faster of NCHW and channels_last. Ours takes its input packed, as the
    previous binary conv's fused output step leaves it, and includes its own fused output
    step: BN, residual, FPReLU, float output (channels_last, as the kernels pass it on) and
    packing for the next conv."""
    generator = torch.Generator().manual_seed(0)
    conv = BinaryConv2d(channels, channels)
    x = torch.randn(1, channels, size, size, generator=generator)
    x = torch.sign(x.relu() if inputs == "{0,1}" else x)
    weight = torch.sign(conv.weight.detach())
    x_last = x.contiguous(memory_format=torch.channels_last)
    weight_last = weight.contiguous(memory_format=torch.channels_last)
    packed = PackedBinaryConv2d.from_conv(conv)
    bn, act = FoldedBatchNorm2d(channels), FPReLU(channels)
    ours = {}
    with torch.no_grad():
        layouts = {"NCHW": median_ms(lambda: F.conv2d(x, weight, padding=1), repeats, 10),
                   "NHWC": median_ms(lambda: F.conv2d(x_last, weight_last, padding=1),
                                     repeats, 10)}
        for path in fast.supported_paths():
            kernel = fast.FastBinaryConv(packed, fast.PATHS.index(path))
            fused = kernel.fuse(bn, act, next_groups=1)
            *planes, counts = kernel.planes(x_last)
            ours[path] = median_ms(partial(fused, None, planes, counts, residual=x_last),
                                   repeats, 10)
        packing = median_ms(partial(fast.FastBinaryConv(packed).planes, x_last), repeats, 10)
    layout = min(layouts, key=layouts.get)
    return layouts[layout], layout, ours, packing


def network_row(repeats: int) -> tuple[float, str, dict[str, float]]:
    """(fp32 eager ms, its layout, ours ms per kernel path): PyTorch's model in the faster of
    NCHW and channels_last against the same model exported and run fused on the kernels."""
    model = baseline(224).eval()
    inference = to_inference(model)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    model_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)
    ours = {}
    with torch.no_grad():
        layouts = {"NCHW": median_ms(lambda: model(x), repeats, 5),
                   "NHWC": median_ms(lambda: model_last(x_last), repeats, 5)}
        for path in fast.supported_paths():
            runner = fast.FastFTBNN(inference, fast.PATHS.index(path))
            ours[path] = median_ms(partial(runner, x), repeats, 5)
            assert torch.equal(runner(x).argmax(1), model(x).argmax(1))
    layout = min(layouts, key=layouts.get)
    return layouts[layout], layout, ours


def judged(path: str, ratio: float, target: float) -> str:
    """The ratio, with its verdict where the issue's targets apply (the AVX-512 paths)."""
    if path.startswith("avx512"):
        return verdict(ratio, target, higher_is_better=True)
    return f"{ratio:.3f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if fast.kernels() is None:
        raise SystemExit("error: the C++ kernels could not be built here (see the warning)")
    print(f"binary conv 3×3/1, batch 1, 1 thread, median of {args.repeats} ({cpu_description()})")
    print("fp32: F.conv2d, the faster of NCHW and NHWC (channels_last); ours: packed input -> "
          "popcount conv -> BN scale/bias + residual + FPReLU -> float output + packed output "
          "for the next conv (packing a float input: own column)")
    rows = [("256→256 14×14", 256, 14, "±1"), ("256→256 14×14", 256, 14, "{0,1}")]
    rows += [(f"stage {c}→{c} {s}×{s}", c, s, "±1") for c, s in STAGES]
    best = fast.PATHS[fast.best_path()]
    others = []
    for name, channels, size, inputs in rows:
        fp32, layout, ours, packing = layer_row(channels, size, inputs, args.repeats)
        print(f"  {name:22s} {inputs:5s} fp32 {layout} {fp32:7.3f} ms   ours {ours[best]:7.3f} "
              f"ms   {verdict(fp32 / ours[best], LAYER_TARGET, higher_is_better=True)}   "
              f"(packing a float input {packing:.3f} ms)")
        others += [(name, inputs, path, fp32 / ms) for path, ms in ours.items() if path != best]
    fp32, layout, ours = network_row(args.repeats)
    print(f"  FTBNN-18 baseline, 224 px   fp32 eager {layout} {fp32:7.2f} ms/image   ours "
          f"{ours[best]:7.2f} ms/image   "
          f"{verdict(fp32 / ours[best], NETWORK_TARGET, higher_is_better=True)}")
    print(f"the slower paths, for CPUs without {best} (same fp32 times; the targets are set "
          f"for AVX-512 CPUs):")
    for name, inputs, path, ratio in others:
        print(f"  {name:22s} {inputs:5s} {path:17s} {judged(path, ratio, LAYER_TARGET)}")
    for path, ms in ours.items():
        if path != best:
            print(f"  FTBNN-18 baseline, 224 px   {path:17s} {ms:7.2f} ms/image   "
                  f"{judged(path, fp32 / ms, NETWORK_TARGET)}")


if __name__ == "__main__":
    main()
