"""What a binary multiply-add costs on this CPU, measured: the exchange rate against fp32 and
the popcount ceiling.

The budget of Table 4 is FLOPs + BOPs/64: the paper charges one binary multiply-add (BOP) 1/64
of a floating-point one. :func:`measure_rates` times, per layer kind, ``F.conv2d`` in fp32 and
our packed binary conv (``kernels/bconv.cpp``) on the same shape, side by side in rounds, and
answers how many BOPs cost as much as one FLOP here (``deploy rate``). That number is the
``budget_rate`` the width solver can solve Table 4's widths for (``python -m
ftbnn_exp.complexity model=derived budget_rate=<it>``), so a user derives the models that meet
the budget on their own hardware.

The binary side is the raw conv (input already packed, as the previous layer's fused output
step leaves it; int32 out), the fp32 side the conv alone in its faster layout: the multiply-
adds each budget term counts, without the output steps the ``paper`` convention counts apart.

:func:`ceiling_rate` is this CPU's ceiling for those multiply-adds (``kernels/ceiling.cpp``):
a tight XOR + POPCNT + ADD loop over L1-resident words, per instruction-set path
(``benchmarks/ceiling.py`` sets every layer's achieved rate against it). :func:`fma_rate` is
the same for fp32 multiply-adds, the real-valued layers' ceiling (stem, 1×1 shortcuts, FC): a
register-resident loop of fused multiply-adds on independent accumulators, per vector width.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

from ftbnn_exp.complexity.counter import BOPS_PER_FLOP
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.layers import PackedBinaryConv2d
from ftbnn_exp.deploy.timing import Spread
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn import BinaryConv2d
from ftbnn_exp.timing import seconds_per_call

CEILING_SOURCE = files("ftbnn_exp.deploy") / "kernels" / "ceiling.cpp"
CEILING_NAME = "ftbnn_ceiling"
CEILING_CFLAGS = ("-O3",)
SAMPLE_SECONDS = 0.002
"""Each timed sample runs its call this long (repeated calls): long enough for the clock,
short enough that the rounds interleave fp32 and binary finely on a shared machine."""
MIN_IMAGE_SIZE = 16


def exchange_rate(fp32_seconds: float, macs: int, binary_seconds: float, bops: int) -> float:
    """BOPs that cost as much as one FLOP (one fp32 multiply-add): the fp32 conv's seconds
    per multiply-add over the binary conv's seconds per BOP (BOPs as the counter counts them:
    twice the multiply-adds for an input in {0, 1})."""
    return (fp32_seconds * bops) / (macs * binary_seconds)


def rate_text(rate: float) -> str:
    """``13.2`` -> ``1 BOP = 1/13.2 FLOP`` (three significant digits)."""
    return f"1 BOP = 1/{rate:.3g} FLOP"


def verdict_line(rate: float) -> str:
    """Where the paper's /64 and the measured rate disagree, plainly."""
    head = f"paper: {rate_text(BOPS_PER_FLOP)}; here {rate_text(rate)}"
    if math.isclose(rate, BOPS_PER_FLOP, rel_tol=0.05):
        return f"{head}: the paper's budget prices binary multiply-adds as this CPU does"
    if rate < BOPS_PER_FLOP:
        return (f"{head}: a binary multiply-add costs {BOPS_PER_FLOP / rate:.1f}× what the "
                f"paper's budget charges; solve widths at this CPU's rate with "
                f"budget_rate={rate:.3g}")
    return (f"{head}: a binary multiply-add costs {rate / BOPS_PER_FLOP:.1f}× less than the "
            f"paper's budget charges; solve widths at this CPU's rate with "
            f"budget_rate={rate:.3g}")


@dataclass(frozen=True)
class LayerKind:
    """One kind of binary conv, at a representative shape of our networks: a 3×3 conv of
    ``channels[0]`` → ``channels[1]`` on a ``size`` × ``size`` input (``size_divisor`` of the
    image size), ``groups`` groups, input ±1 or {0, 1} (after a ReLU: BOPs counted twice)."""

    name: str
    channels: tuple[int, int]
    size_divisor: int
    stride: int = 1
    groups: int = 1
    inputs: str = "±1"

    def size(self, image_size: int) -> int:
        return max(1, image_size // self.size_divisor)

    def macs(self, image_size: int) -> int:
        out = -(-self.size(image_size) // self.stride)
        return out * out * self.channels[1] * (self.channels[0] // self.groups) * 9

    def bops(self, image_size: int) -> int:
        return self.macs(image_size) * (2 if self.inputs == "{0,1}" else 1)

    def describe(self, image_size: int) -> str:
        size, out = self.size(image_size), -(-self.size(image_size) // self.stride)
        return f"{self.channels[0]}→{self.channels[1]} {size}²→{out}²"


# FTBNN-18's stage 3 (stride 1) and its entry (stride 2; after the stage-end ReLU its input
# is {0, 1}), and Table 4's L34-G5 at its 135M width w=180: stage 3's normal block and the
# reduction block into it (its doubled input, 5 groups).
KINDS = (
    LayerKind("3×3 stride 1", (256, 256), 16),
    LayerKind("3×3 stride 2", (128, 256), 8, stride=2),
    LayerKind("3×3 stride 2, {0,1} in", (128, 256), 8, stride=2, inputs="{0,1}"),
    LayerKind("3×3 stride 1, 5 groups", (720, 720), 16, groups=5),
    LayerKind("3×3 stride 2, 5 groups", (720, 720), 8, stride=2, groups=5),
)


def calls_for(run: Callable[[], object], seconds: float = SAMPLE_SECONDS) -> int:
    """How many calls of ``run`` (warmed up) take about ``seconds``."""
    run()
    once = seconds_per_call(run, 1)
    return max(1, math.ceil(seconds / max(once, 1e-9)))


def fp32_conv(x: Tensor, weight: Tensor, stride: int, groups: int) -> Callable[[], Tensor]:
    """``F.conv2d`` of this shape in its faster layout here (NCHW or channels_last)."""
    runs = []
    for layout in (torch.contiguous_format, torch.channels_last):
        xl, wl = x.contiguous(memory_format=layout), weight.contiguous(memory_format=layout)
        runs.append(lambda xl=xl, wl=wl: F.conv2d(xl, wl, None, stride, 1, 1, groups))
    timed = [min(seconds_per_call(run, 1) for _ in range(3)) for run in runs]
    return runs[timed.index(min(timed))]


def binary_conv(conv: PackedBinaryConv2d, x: Tensor, path: int | None = None
                ) -> Callable[[], list[Tensor]]:
    """Our raw packed conv of ``x``, the input packed beforehand."""
    kernel = fast.FastBinaryConv(conv, path)
    xs, xn, counts = kernel.planes(x.contiguous(memory_format=torch.channels_last))
    return lambda: kernel(None, (xs, xn), counts)


def kind_layers(kind: LayerKind, image_size: int, seed: int = 0
                ) -> tuple[Callable[[], Tensor], Callable[[], list[Tensor]]]:
    """(fp32 conv, our binary conv) of one kind's shape, on the same binarized input and
    weights."""
    generator = torch.Generator().manual_seed(seed)
    cin, cout = kind.channels
    conv = BinaryConv2d(cin, cout, 3, stride=kind.stride, padding=1, groups=kind.groups)
    with torch.no_grad():
        conv.weight.normal_(generator=generator)
    size = kind.size(image_size)
    x = torch.randn(1, cin, size, size, generator=generator)
    x = torch.sign(x.relu() if kind.inputs == "{0,1}" else x)
    weight = torch.sign(conv.weight.detach())
    return (fp32_conv(x, weight, kind.stride, kind.groups),
            binary_conv(PackedBinaryConv2d.from_conv(conv), x))


@dataclass
class KindRates:
    """One kind's samples at one image size: seconds per call of each side, per round."""

    kind: LayerKind
    image_size: int
    fp32: list[float] = field(default_factory=list)
    binary: list[float] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        """The rate of each round, from that round's two samples."""
        macs, bops = self.kind.macs(self.image_size), self.kind.bops(self.image_size)
        return [exchange_rate(fp, macs, binary, bops)
                for fp, binary in zip(self.fp32, self.binary, strict=True)]


def measure_rates(image_size: int = 224, rounds: int = 30, threads: int = 1,
                  kinds: Sequence[LayerKind] = KINDS) -> list[KindRates]:
    """Every kind's samples: each round times every kind's fp32 and binary conv side by side
    (a sample of :data:`SAMPLE_SECONDS` each), so a neighbour's load moves both."""
    check_rate_args(image_size, rounds, threads)
    if fast.kernels() is None:
        raise InvalidArgument("the C++ kernels could not be built here (see the warning); "
                              "there is no binary conv to time")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            pairs = [kind_layers(kind, image_size) for kind in kinds]
            found = [KindRates(kind, image_size) for kind in kinds]
            sample_rounds(pairs, found, rounds)
    finally:
        torch.set_num_threads(before)
    return found


def sample_rounds(pairs: Sequence[tuple[Callable[[], object], Callable[[], object]]],
                  found: Sequence[KindRates], rounds: int) -> None:
    """``rounds`` rounds of one fp32 and one binary sample per kind, appended to ``found``."""
    calls = [(calls_for(fp), calls_for(binary)) for fp, binary in pairs]
    for _ in range(rounds):
        for (fp, binary), (n_fp, n_binary), samples in zip(pairs, calls, found, strict=True):
            samples.fp32.append(seconds_per_call(fp, n_fp))
            samples.binary.append(seconds_per_call(binary, n_binary))


def overall_rates(found: Sequence[KindRates]) -> list[float]:
    """Per round, the rate of all kinds together: their fp32 seconds per multiply-add over
    their binary seconds per BOP."""
    macs = sum(k.kind.macs(k.image_size) for k in found)
    bops = sum(k.kind.bops(k.image_size) for k in found)
    rounds = len(found[0].fp32)
    return [exchange_rate(sum(k.fp32[r] for k in found), macs,
                          sum(k.binary[r] for k in found), bops) for r in range(rounds)]


def check_rate_args(image_size: int, rounds: int, threads: int) -> None:
    """One-line refusals naming the argument and what is allowed."""
    if threads < 1:
        raise InvalidArgument(f"--threads {threads}: allowed: a whole number of threads from 1")
    if rounds < 1:
        raise InvalidArgument(f"--repeats {rounds}: allowed: a whole number of rounds from 1")
    if image_size < MIN_IMAGE_SIZE:
        raise InvalidArgument(f"--image-size {image_size}: allowed: a whole number of pixels "
                              f"from {MIN_IMAGE_SIZE}")


def kind_line(k: KindRates) -> str:
    """One kind: median times, the per-round rates min/median/max, and best/best (the two
    least disturbed samples' rate, a check on a busy machine)."""
    low, mid, high = Spread.of(k.rates)
    best = exchange_rate(min(k.fp32), k.kind.macs(k.image_size), min(k.binary),
                         k.kind.bops(k.image_size))
    return (f"  {k.kind.name:24s} {k.kind.describe(k.image_size):17s} {k.kind.inputs:5s} "
            f"fp32 {1e3 * statistics.median(k.fp32):7.3f} ms  binary "
            f"{1e3 * statistics.median(k.binary):7.3f} ms  rate min {low:6.2f} median "
            f"{mid:6.2f} max {high:6.2f}, best/best {best:6.2f}  ({rate_text(mid)})")


def describe_rates(found: Sequence[KindRates], image_size: int, threads: int) -> list[str]:
    """The report of ``deploy rate``: one line per kind, then the verdict against /64."""
    rounds = len(found[0].fp32)
    lines = [f"exchange rate on this CPU ({fast.PATHS[fast.best_path()]} kernels, {threads} "
             f"thread(s), batch 1, {image_size} px shapes, {rounds} rounds side by side): "
             f"BOPs that cost as much as one fp32 multiply-add (fp32: F.conv2d in its faster "
             f"layout; binary: our packed conv, input packed, raw int32 out)"]
    lines += [kind_line(k) for k in found]
    low, mid, high = Spread.of(overall_rates(found))
    lines.append(f"  {'all kinds together':24s} {'':17s} {'':5s} {'':47s} rate min {low:6.2f} "
                 f"median {mid:6.2f} max {high:6.2f}")
    lines.append(verdict_line(mid))
    return lines


# ---- the popcount ceiling (kernels/ceiling.cpp)

@cache
def ceiling_kernels() -> ModuleType | None:
    """The compiled ceiling loops (built as the kernels are), or None with one warning."""
    return fast.build_extension(CEILING_NAME, CEILING_SOURCE, CEILING_CFLAGS,
                                "building the popcount ceiling loops (first use, ~1 min)…",
                                "the popcount ceiling loops")


def _passes(elapsed: Callable[[int], float], probe: int, seconds: float) -> int:
    """How many passes of a ceiling loop take about ``seconds``: ``elapsed(passes)`` times
    that many, once to warm up and then ``probe`` of them."""
    elapsed(1)
    return max(1, math.ceil(probe * seconds / max(elapsed(probe), 1e-9)))


@cache
def _ceiling_passes(path: str, seconds: float) -> int:
    return _passes(lambda n: ceiling_kernels().ceiling(fast.PATHS.index(path), n)[1], 16,
                   seconds)


def ceiling_rate(path: str, seconds: float = SAMPLE_SECONDS) -> float:
    """Binary multiply-adds per second of ``path``'s XOR + POPCNT + ADD loop on this thread,
    over about ``seconds`` (one sample: the caller takes rounds)."""
    module = ceiling_kernels()
    if module is None:
        raise InvalidArgument("the popcount ceiling loops could not be built here")
    macs, elapsed = module.ceiling(fast.PATHS.index(path), _ceiling_passes(path, seconds))
    return macs / elapsed


# ---- the fp32 ceiling (the same file's FMA loops)

FMA_PATHS = ("avx2_fma", "avx512f")
"""The FMA loops by number (``fma_ceiling``'s path): 8 and 16 fp32 lanes."""


def fma_paths() -> list[str]:
    """The FMA loops this CPU runs, narrowest first (none without the ceiling loops)."""
    module = ceiling_kernels()
    return [FMA_PATHS[number] for number in module.fma_paths()] if module else []


def best_fma_path() -> str:
    """The widest FMA loop here: the fp32 ceiling the real-valued layers are set against."""
    found = fma_paths()
    if not found:
        raise InvalidArgument("no fp32 FMA loop runs here (AVX2 + FMA or AVX-512F needed)")
    return found[-1]


@cache
def _fma_passes(path: str, seconds: float) -> int:
    return _passes(lambda n: ceiling_kernels().fma_ceiling(FMA_PATHS.index(path), n)[1], 256,
                   seconds)


def fma_rate(path: str, seconds: float = SAMPLE_SECONDS) -> float:
    """fp32 multiply-adds per second of ``path``'s FMA loop on this thread, over about
    ``seconds`` (one sample: the caller takes rounds)."""
    module = ceiling_kernels()
    if module is None:
        raise InvalidArgument("the fp32 ceiling loops could not be built here")
    macs, elapsed, _ = module.fma_ceiling(FMA_PATHS.index(path), _fma_passes(path, seconds))
    return macs / elapsed
