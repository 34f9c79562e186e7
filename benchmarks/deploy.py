"""``make bench-deploy``: the bit-packed C++ kernels against what a user would deploy instead,
medians of ``--repeats`` runs at batch 1, everything measured side by side in one run.

1. Per layer, 1 thread: our fused binary conv vs ``F.conv2d`` fp32 in its faster layout
   (target ≥ 5×), every kernel path this CPU has.
   Then OpenVINO's own binary convolution (BinaryConvolution-1) beside ours on every binary
   conv of FTBNN-18, bit-exactness checked (:mod:`benchmarks.ov_binary`; ``bench`` extra).
2. Whole networks at 1 thread and at all cores: the FTBNN-18 baseline (fused blocks) and
   Table 4's derived L18-G1 and L34-G5 at their solved widths (C++ binary convs), beside
   OpenVINO and ONNX Runtime fp32 and int8 (static QDQ) on torchvision's ResNet-18 and on the
   same FTBNN-18 (optional: ``pip install 'ftbnn-exp[bench]'``). Targets: FTBNN-18 ≥ 2.5× and
   L34-G5 ≥ 5× faster than OpenVINO int8 ResNet-18, at 1 thread and at all cores.
3. Our thread scaling from 1 thread to all cores, and each network's time by layer type
   (:mod:`ftbnn_exp.deploy.profile`): what holds a target back.
4. The spread (min / median / max over the rounds) at 1 thread and all cores, the two
   taking turns round by round, and all cores / 1 thread as the median of the rounds' ratios
   (their range beside it), quiet and
   beside one busy process (:mod:`ftbnn_exp.deploy.timing`), ours beside OpenVINO int8
   ResNet-18 under the same load. Goals (issue 26): all cores ≤ 0.7× one thread on a quiet
   machine, and never slower than one thread beside a busy process.

As ``python -m ftbnn_exp.deploy`` does, this sets ``OMP_WAIT_POLICY=PASSIVE`` before torch
starts OpenMP (see that module's docstring).
"""

from __future__ import annotations

import os
import statistics

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from benchmarks import ov_binary, peers
from benchmarks.common import baseline, trained_like, verdict
from ftbnn_exp.complexity.solver import solve_width
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.layers import FoldedBatchNorm2d, PackedBinaryConv2d, to_inference
from ftbnn_exp.deploy.profile import breakdown, describe
from ftbnn_exp.deploy.timing import Spread, busy_process, thread_rounds
from ftbnn_exp.models import family
from ftbnn_exp.models.derived import derived_ftbnn
from ftbnn_exp.nn import BinaryConv2d, FPReLU, NonLinearitySchedule
from ftbnn_exp.timing import timed_rounds

LAYER_TARGET, BASELINE_TARGET, DERIVED_TARGET = 5.0, 2.5, 5.0
DERIVED_ROWS = ((18, 1), (34, 5))
"""Table 4's rows on the whole-network bench (depth, groups), at the 135M budget."""
# (channels, size): ResNet-18's four stages at 224 px; 256 at 14×14 is the headline layer.
STAGES = [(64, 56), (128, 28), (256, 14), (512, 7)]


def median_ms(run: Callable[[], object], repeats: int, warmup: int) -> float:
    return 1e3 * statistics.median(timed_rounds(run, repeats, warmup))


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


def networks(image_size: int) -> dict[str, tuple[nn.Module, str]]:
    """Our networks (float model, its family's name): the FTBNN-18 baseline and Table 4's
    L18-G1 and L34-G5 at the widths the solver gives their 135M rows."""
    schedule = NonLinearitySchedule("relu", "fprelu")
    torch.manual_seed(0)  # the same weights every run, as training leaves them (trained_like)
    found = {"FTBNN-18 baseline": (trained_like(baseline(image_size)).eval(), "ftbnn_resnet")}
    for depth, groups in DERIVED_ROWS:
        width = solve_width(family("derived_ftbnn"), {"depth": depth, "groups": groups}, 135,
                            image_size=image_size).width
        model = trained_like(derived_ftbnn(schedule, width, depth, groups,
                                           image_size=image_size)).eval()
        found[f"derived L{depth}-G{groups} (w={width})"] = (model, "derived_ftbnn")
    return found


def thread_counts() -> list[int]:
    cores = os.cpu_count() or 1
    return sorted({1, cores, *(2**i for i in range(1, cores.bit_length()) if 2**i < cores)})


def whole_networks(image_size: int, repeats: int) -> None:
    """Sections 2 and 3 of the module docstring."""
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    cores = os.cpu_count() or 1
    ours = {}
    for name, (model, family_name) in networks(image_size).items():
        runner, how = fast.fastest(to_inference(model), family_name)
        with torch.no_grad():
            assert torch.equal(runner(x), to_inference(model)(x)), f"{name}: not exact"
        ours[name] = (runner, how)
    lacking = peers.missing()
    peer_models = None
    if lacking:
        print(f"peers: not installed ({', '.join(lacking)}): pip install 'ftbnn-exp[bench]'; "
              f"their rows are left out")
    else:
        peer_models = peers.PeerModels(
            {"ResNet-18": torchvision.models.resnet18(), "FTBNN-18": baseline(image_size)},
            image_size)
    print(f"whole networks, {image_size} px, batch 1, median of {repeats}: ms/image at 1 "
          f"thread and at all {cores} cores")
    times: dict[str, dict[int, float]] = {}
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        with torch.no_grad():
            for name, (runner, how) in ours.items():
                times.setdefault(f"ours, {name} ({how})", {})[threads] = median_ms(
                    partial(runner, x), repeats, 5)
        if peer_models:
            for engine in peers.ENGINES:
                for model in ("ResNet-18", "FTBNN-18"):
                    for precision in ("int8", "fp32"):
                        run = peer_models.runner(engine, model, precision, threads)
                        times.setdefault(f"{engine} {precision}, {model}", {})[threads] = \
                            median_ms(run, repeats, 5)
    reference = times.get("openvino int8, ResNet-18")
    for row, by_threads in times.items():
        cells = "   ".join(f"{ms:7.2f} ms" + (f" ({reference[t] / ms:5.2f}× vs OV int8 R18)"
                                              if reference else "")
                           for t, ms in sorted(by_threads.items()))
        print(f"  {row:52s} {cells}")
    print("verdicts (vs OpenVINO int8 ResNet-18, same thread count):")
    for name, target in (("FTBNN-18 baseline", BASELINE_TARGET),
                         (f"derived L{DERIVED_ROWS[1][0]}-G{DERIVED_ROWS[1][1]}", DERIVED_TARGET)):
        row = next(r for r in times if r.startswith(f"ours, {name}"))
        for threads, ms in sorted(times[row].items()):
            print(f"  {name:22s} {threads:2d} thread(s): " + (
                verdict(reference[threads] / ms, target, higher_is_better=True) if reference
                else "no peer to compare with"))
    print(f"our thread scaling (ms/image, speed-up over 1 thread), threads {thread_counts()}:")
    for name, (runner, _) in ours.items():
        cells = []
        for threads in thread_counts():
            torch.set_num_threads(threads)
            with torch.no_grad():
                cells.append(median_ms(partial(runner, x), repeats, 5))
        print(f"  {name:34s} " + "   ".join(f"{t} → {ms:6.2f} ms ({cells[0] / ms:4.2f}×)"
                                           for t, ms in zip(thread_counts(), cells,
                                                            strict=True)))
    spread_under_load(ours, peer_models, x, repeats)
    print("where the time goes (profiled, ms/image by layer type):")
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for name, (runner, _) in ours.items():
            print(f"  {name:34s} {threads:2d} thread(s): "
                  f"{describe(breakdown(runner, x, repeats=10))}")
    torch.set_num_threads(1)


def spread_under_load(ours: dict, peer_models: object, x: torch.Tensor, repeats: int) -> None:
    """Section 4 of the module docstring."""
    cores = os.cpu_count() or 1
    print(f"spread over {repeats} rounds (median, min, max), quiet and beside one busy process:")
    for load in ("quiet", "loaded"):
        context = busy_process() if load == "loaded" else contextlib.nullcontext()
        with context:
            rows = {name: partial(runner, x) for name, (runner, _) in ours.items()}
            if peer_models is not None:
                rows["OpenVINO int8 ResNet-18"] = None
            for name, run in rows.items():
                calls = {t: run or peer_models.runner("openvino", "ResNet-18", "int8", t)
                         for t in sorted({1, cores})}
                times = thread_rounds(calls, repeats, 5)
                ratios = Spread.of([many / one for one, many in zip(times[1], times[cores],
                                                                     strict=True)])
                print(f"  {load:6s} {name:28s} " + "   ".join(
                    f"{t} thread(s) {Spread.of(ms)}" for t, ms in times.items())
                    + f"   all cores / 1 thread {ratios.median:.2f}× (rounds "
                    f"{ratios.low:.2f}–{ratios.high:.2f})")
    torch.set_num_threads(1)


def judged(path: str, ratio: float, target: float) -> str:
    """The ratio, with its verdict where the issue's targets apply (the AVX-512 paths)."""
    if path.startswith("avx512"):
        return verdict(ratio, target, higher_is_better=True)
    return f"{ratio:.3f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--no-layers", action="store_true", help="whole networks only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if fast.kernels() is None:
        raise SystemExit("error: the C++ kernels could not be built here (see the warning)")
    print(f"{cpu_description()}; {os.cpu_count()} cores")
    if not args.no_layers:
        layers(args.repeats)
        ov_binary.section(args.repeats, args.image_size)
    whole_networks(args.image_size, args.repeats)


def layers(repeats: int) -> None:
    """Section 1 of the module docstring."""
    print(f"binary conv 3×3/1, batch 1, 1 thread, median of {repeats}")
    print("fp32: F.conv2d, the faster of NCHW and NHWC (channels_last); ours: packed input -> "
          "popcount conv -> BN scale/bias + residual + FPReLU -> float output + packed output "
          "for the next conv (packing a float input: own column)")
    rows = [("256→256 14×14", 256, 14, "±1"), ("256→256 14×14", 256, 14, "{0,1}")]
    rows += [(f"stage {c}→{c} {s}×{s}", c, s, "±1") for c, s in STAGES]
    best = fast.PATHS[fast.best_path()]
    others = []
    for name, channels, size, inputs in rows:
        fp32, layout, ours, packing = layer_row(channels, size, inputs, repeats)
        print(f"  {name:22s} {inputs:5s} fp32 {layout} {fp32:7.3f} ms   ours {ours[best]:7.3f} "
              f"ms   {verdict(fp32 / ours[best], LAYER_TARGET, higher_is_better=True)}   "
              f"(packing a float input {packing:.3f} ms)")
        others += [(name, inputs, path, fp32 / ms) for path, ms in ours.items() if path != best]
    print(f"the slower paths, for CPUs without {best} (same fp32 times; the targets are set "
          f"for AVX-512 CPUs):")
    for name, inputs, path, ratio in others:
        print(f"  {name:22s} {inputs:5s} {path:17s} {judged(path, ratio, LAYER_TARGET)}")


if __name__ == "__main__":
    main()
