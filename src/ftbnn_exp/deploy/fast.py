"""The fast CPU path: bit-packed binary convolutions in C++ (``kernels/bconv.cpp``).

Built on first use with torch's extension tooling (announced: it takes minutes) and cached in
torch's extension folder. Without a working compiler the package falls back to the exact
PyTorch reference (:mod:`bitops`), saying so once.
Instruction-set paths (AVX-512 VPOPCNTDQ, AVX-512BW, AVX2, scalar POPCNT) are chosen at run
time from the CPU's features; every path is bit-exact against the reference (tests). The
kernels split output pixels over ``torch.get_num_threads()`` threads of their own pool; each
output is computed by one thread in one order, so any thread count gives the same bits. The
fused runner runs the real-valued layers on the same pool (:class:`ExactPart`): one thread
system for the whole network, no OpenMP team woken beside it (issue 37).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import statistics
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from ftbnn_exp.deploy.bands import RowBands
from ftbnn_exp.deploy.bitops import pack
from ftbnn_exp.deploy.layers import FoldedBatchNorm2d, PackedBinaryConv2d
from ftbnn_exp.deploy.runners import IDENTITY_SHORTCUT, FusedPlan, runner_of
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn import fused_form
from ftbnn_exp.nn.fused import FusedActivation, fused_steps
from ftbnn_exp.timing import timed_rounds

SOURCE = files("ftbnn_exp.deploy") / "kernels" / "bconv.cpp"
"""Installed with the package (package data), built where :func:`build_source` says."""
NAME = "ftbnn_bconv"
# threads are the kernels' own (std::thread, see run_chunks in bconv.cpp): no OpenMP
CFLAGS = ("-O3", "-ffp-contract=off")
BUILD_NOTE = "building the C++ kernels (first use, ~2 min)…"
PATHS = ("popcnt", "avx2", "avx512bw", "avx512_vpopcntdq")
"""Paths by number, slowest first; :func:`best_path` takes the last one the CPU has."""
BIPOLAR, UNIPOLAR, GENERAL = 0, 1, 2
NATIVE_STEPS = {"relu": 1, "slopes": 2}
"""The primitives the kernel's output step computes itself (its ``act`` code; 0: none), as the
first step of a module's form; the steps after them run in PyTorch (:func:`apply_step`)."""


def build_source(name: str, source: Traversable, cflags: tuple[str, ...]
                 ) -> tuple[Path, Path]:
    """A C++ extension's build folder and its source copied into it. The folder is named by
    what the build depends on (source text, flags, torch, Python), not by where the package
    lies: torch's own folder is one per extension name, and its ninja file holds the source's
    path, so a checkout and an installed copy rebuilt over each other's build (~2 min at each
    switch). Here every copy of the same source shares one build; an edited source gets its
    own."""
    from torch.utils.cpp_extension import get_default_build_root

    text = source.read_bytes()
    digest = hashlib.sha256(text)
    digest.update(repr((cflags, torch.__version__, sys.version)).encode())
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    folder = Path(root) / f"{name}-{digest.hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    copied = folder / source.name
    if not copied.exists():  # never rewritten: a newer file would make ninja build again
        partial_copy = folder / f"{source.name}.{os.getpid()}"
        partial_copy.write_bytes(text)
        partial_copy.replace(copied)
    return folder, copied


def build_extension(name: str, source: Traversable, cflags: tuple[str, ...], note: str,
                    what: str, fallback: str = "") -> ModuleType | None:
    """The compiled extension, or None with one warning naming ``what`` (and the ``fallback``
    used instead) where it cannot be built: no compiler, no headers, not x86-64. A build
    takes minutes without a word from torch, so a missing build is announced (``note``)."""
    # its import warns "No CUDA runtime is found" on every CPU machine: not ours to show
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import LIB_EXT, load

        folder, copied = build_source(name, source, cflags)
        if not (folder / f"{name}{LIB_EXT}").exists():
            print(note, file=sys.stderr, flush=True)
        # a copy: torch appends its own flags to the list it is given
        return load(name=name, sources=[str(copied)], extra_cflags=list(cflags),
                    build_directory=str(folder), verbose=False)
    except Exception as error:  # every failure to build means "not here"
        warnings.warn(f"ftbnn_exp: {what} could not be built ({type(error).__name__}: "
                      f"{' '.join(str(error).split())[:200]}){fallback}", stacklevel=3)
        return None


@cache
def kernels() -> ModuleType | None:
    """The compiled kernels, or None: the exact PyTorch reference engine is used instead."""
    return build_extension(NAME, SOURCE, CFLAGS, BUILD_NOTE, "the C++ binary-conv kernels",
                           "; using the exact PyTorch reference engine instead")


def supported_paths() -> list[str]:
    module = kernels()
    return list(module.supported_paths()) if module else []


def best_path() -> int:
    return max(PATHS.index(name) for name in supported_paths())


def block_weights(weight: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Sign / nonzero planes of ``weight`` [O, C/g, k, k] in the kernel's layout
    [G, ceil(O_g/8), k·k, words, 8]."""
    out_channels, cin, k, _ = weight.shape
    per_group = out_channels // groups
    blocks = -(-per_group // 8)
    planes = []
    for bits in (weight > 0, weight != 0):
        w = bits.view(groups, per_group, cin, k * k).permute(0, 1, 3, 2)  # [G, Og, kk, C]
        w = F.pad(w, (0, 0, 0, 0, 0, blocks * 8 - per_group))  # all-zero missing channels
        words = pack(w)  # [G, OB*8, kk, words]
        words = words.view(groups, blocks, 8, k * k, -1).permute(0, 1, 3, 4, 2)
        planes.append(words.contiguous())
    return planes[0], planes[1]


TAP_SHARE = 0.8
"""Tap-packing pays below this share of the padded words. Measured (1 thread, AVX2 EPYC,
fused 3×3, tap-packed / padded time, interleaved, over four runs): 0.81-1.03 at 36 channels
a group (56²), 0.85-0.88 at 72 (28²), 0.92-0.96 at 144 (14²), 1.21 at 288 (7²)."""


def tap_weights(weight: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """``weight`` [O, C/g, k, k] tap-packed for the kernel (bconv.cpp's ``taps``): each output
    channel's k·k·C/g sign bits back to back, kernel position by kernel position, as
    [G, ceil(O_g/8), ceil(k·k·C/g / 64), 8] words; and the ones of each position
    [G, ceil(O_g/8), k·k, 8], what a position outside the input adds to ``x ⊕ w`` when its
    input bits are zeros."""
    out_channels, cin, k, _ = weight.shape
    per_group = out_channels // groups
    blocks = -(-per_group // 8)
    signs = (weight > 0).view(groups, per_group, cin, k * k).permute(0, 1, 3, 2)  # [G,Og,kk,C]
    missing = (0, 0, 0, 0, 0, blocks * 8 - per_group)
    words = pack(F.pad(signs, missing).flatten(2))  # [G, OB*8, T]
    ones = F.pad(signs.sum(-1), missing[2:])  # [G, OB*8, kk]
    return tuple(t.view(groups, blocks, 8, -1).permute(0, 1, 3, 2).contiguous()
                 for t in (words, ones))


def uses_taps(cin_per_group: int, kernel: int, path: int) -> bool:
    """Whether a conv runs tap-packed: where that spends at most :data:`TAP_SHARE` of the
    words that padding each kernel position's C/g channels to whole words does (3×3 at 36, 72
    or 144 channels a group: 6 words against 9, 11 against 18, 21 against 27; not 288: 41
    against 45, which measured slower, as the padded code skips positions outside the input
    and the tap-packed one corrects for them), on every path but AVX-512BW, whose 3×3 window
    code adds nine positions' bits before one popcount."""
    padded = kernel * kernel * -(-cin_per_group // 64)
    taps = -(-kernel * kernel * cin_per_group // 64)
    return PATHS[path] != "avx512bw" and taps <= TAP_SHARE * padded


def input_kind(x: Tensor, weights_have_zeros: bool) -> int:
    """The cheapest exact formula for this input (see ``kernels/bconv.cpp``)."""
    if weights_have_zeros:
        return GENERAL
    if bool((x >= 0).all()):
        return UNIPOLAR
    return BIPOLAR if bool((x != 0).all()) else GENERAL


def kind_from_counts(counts: Tensor, weights_have_zeros: bool) -> int:
    negatives, zeros = counts.tolist()
    if weights_have_zeros:
        return GENERAL
    if negatives == 0:
        return UNIPOLAR
    return BIPOLAR if zeros == 0 else GENERAL


def per_channel(values: Tensor, channels: int, where: str) -> Tensor:
    """A primitive's parameter as one value per channel (one value is broadcast); a one-line
    refusal naming ``where`` for any other count."""
    if values.numel() == 1:
        return values.expand(channels).contiguous()
    if values.numel() != channels:
        raise InvalidArgument(f"the fused form at {where} has {values.numel()} values for "
                              f"{channels} channels; allowed: 1 or {channels}")
    return values


def output_steps(module: nn.Module | None, channels: int, where: str
                 ) -> list[tuple[str, tuple[Tensor, ...]]]:
    """A non-linear module's fused form (its registered part's ``fused`` trait) as primitive
    steps with per-channel parameters; a one-line refusal naming it otherwise."""
    if module is None:
        return []
    steps: tuple[FusedActivation, ...] = fused_steps(fused_form(module, where), where)
    return [(step.kind, tuple(per_channel(p, channels, where) for p in step.parameters))
            for step in steps]


def apply_step(kind: str, parameters: tuple[Tensor, ...], y: Tensor) -> Tensor:
    """One primitive in PyTorch, rounding as the module's own expression does (per channel of
    an NCHW-shaped ``y``)."""
    p = [v.view(1, -1, 1, 1) for v in parameters]
    if kind == "relu":
        return torch.relu(y)
    if kind == "scale":
        return y * p[0]
    if kind == "shift":
        return y + p[0]
    if kind == "slopes":  # one product, as where(y > 0, y * positive, y * negative)
        return y * torch.where(y > 0, p[1], p[0])
    return torch.clamp(y, p[0], p[1])


def check_binarizer(module: nn.Module, where: str) -> None:
    """The packing step computes ``torch.sign(x)``; refuse, in one line, a binarizer whose
    fused form is another (a per-channel threshold) or that has none."""
    if fused_form(module, where).threshold is not None:
        raise InvalidArgument(f"the fused runner packs sign(x) only; {type(module).__name__} "
                              f"at {where} binarizes at a learned threshold")


class FastBinaryConv:
    """One packed binary conv on the C++ kernels, answering raw integers (NCHW shape,
    channels_last memory). :meth:`fuse` prepares its output step once for repeated calls."""

    def __init__(self, conv: PackedBinaryConv2d, path: int | None = None) -> None:
        module = kernels()
        if module is None:
            raise RuntimeError("the C++ kernels are not available")
        self.ops, self.conv = module, conv
        self.path = best_path() if path is None else path
        weight = conv.binary_weight()
        self.weights_have_zeros = bool((weight == 0).any())
        self.ws, self.wn = block_weights(weight, conv.groups)
        self.shape = (conv.out_channels, conv.in_channels // conv.groups, conv.kernel_size,
                      conv.stride, conv.padding)
        taps = not self.weights_have_zeros and uses_taps(*self.shape[1:3], self.path)
        self.taps = tap_weights(weight, conv.groups) if taps else (torch.empty(0),) * 2
        """The tap-packed weights and their ones per position (:func:`tap_weights`), or
        empty where the conv runs on the padded words."""

    def planes(self, x: Tensor, threads: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """Sign and nonzero bit planes of ``x`` for this conv, and its (negatives, zeros),
        packed on ``threads`` threads of the pool (0: ``torch.get_num_threads()``)."""
        with record_function("ftbnn::pack"):
            return tuple(self.ops.pack_nhwc(x, self.conv.groups, threads, self.path))

    def inputs(self, x: Tensor | None, planes: tuple[Tensor, Tensor] | None,
               counts: Tensor | None, threads: int = 0) -> tuple[Tensor, Tensor, int]:
        """The planes of this input (packed here unless given) and its exact formula."""
        if planes is None:
            xs, xn, counts = self.planes(x, threads)
        else:
            xs, xn = planes
        kind = (kind_from_counts(counts, self.weights_have_zeros) if counts is not None
                else input_kind(x, self.weights_have_zeros))
        return xs, xn, kind

    def __call__(self, x: Tensor | None, planes: tuple[Tensor, Tensor] | None = None,
                 counts: Tensor | None = None) -> list[Tensor]:
        """The raw integer conv of ``x``; ``planes`` and ``counts``: ``x`` already packed."""
        xs, xn, kind = self.inputs(x, planes, counts)
        empty = torch.empty(0)
        with record_function("ftbnn::bconv"):
            return self.ops.bconv(xs, xn, self.ws, self.wn, *self.shape, kind, self.path, empty,
                                  empty, empty, 0, empty, empty, 0, *self.taps)

    def fuse(self, bn: FoldedBatchNorm2d, nonlinear: nn.Module | None = None,
             next_groups: int = 0, where: str = "") -> FusedBinaryConv:
        return FusedBinaryConv(self, bn, nonlinear, next_groups, where)


class FusedBinaryConv:
    """A binary conv with its output step fused: ``act(z·scale + bias + residual)`` (NCHW
    shape, channels_last memory) and, with ``next_groups``, its sign / nonzero planes for the
    next binary conv and the counts (negatives, zeros) that pick that conv's formula.

    ``act`` is the non-linear module's form (:mod:`ftbnn_exp.nn.fused`): a first step the
    kernel computes itself (ReLU, slopes) runs in the kernel, which then also packs the next
    input; any other steps run in PyTorch on the kernel's output, then the next input is
    packed from it."""

    def __init__(self, conv: FastBinaryConv, bn: FoldedBatchNorm2d,
                 nonlinear: nn.Module | None, next_groups: int, where: str = "") -> None:
        if bn.conv_scale.numel():
            raise InvalidArgument("the fused runner has no form for a weight scale (the "
                                  "scaling's per-channel α); it runs on the per-conv path")
        self.conv, self.next_groups = conv, next_groups
        steps = output_steps(nonlinear, conv.conv.out_channels, where)
        self.act, self.negative, self.positive = 0, torch.empty(0), torch.empty(0)
        if steps and steps[0][0] in NATIVE_STEPS:
            kind, parameters = steps.pop(0)
            self.act = NATIVE_STEPS[kind]
            if kind == "slopes":
                self.negative, self.positive = parameters
        self.after = steps
        """The steps PyTorch runs after the kernel (none for ReLU, PReLU, FPReLU)."""
        self.packed_by_kernel = 0 if self.after else next_groups
        self.scale, self.bias = bn.scale.contiguous(), bn.bias.contiguous()
        self.empty = torch.empty(0)

    def __call__(self, x: Tensor | None, planes: tuple[Tensor, Tensor] | None = None,
                 counts: Tensor | None = None, residual: Tensor | None = None,
                 threads: int = 0) -> list[Tensor]:
        """``planes`` and ``counts``: ``x`` as the previous fused conv packed it (else packed
        here). A channels_last ``residual`` is read in place. ``threads``: the pool's threads
        (0: ``torch.get_num_threads()``)."""
        c = self.conv
        xs, xn, kind = c.inputs(x, planes, counts, threads)
        with record_function("ftbnn::bconv"):
            out = c.ops.bconv(xs, xn, c.ws, c.wn, *c.shape, kind, c.path, self.scale,
                              self.bias, self.empty if residual is None else residual,
                              self.act, self.negative, self.positive, self.packed_by_kernel,
                              *c.taps, threads)
        if not self.after:
            return out
        y = out[0]
        for step, parameters in self.after:
            y = apply_step(step, parameters, y)
        if not self.next_groups:
            return [y]
        with record_function("ftbnn::pack"):
            return [y, *c.ops.pack_nhwc(y, self.next_groups, threads, c.path)]


class KernelBinaryConv2d(nn.Module):
    """A packed binary conv of an export, run on the C++ kernels (same integers, as float, in
    the layout of its input)."""

    def __init__(self, conv: PackedBinaryConv2d, path: int | None = None) -> None:
        super().__init__()
        self.kernel = FastBinaryConv(conv, path)

    def forward(self, x: Tensor) -> Tensor:
        return self.kernel(x)[0].to(x.dtype, memory_format=torch.contiguous_format)


def accelerate(inference: nn.Module, path: int | None = None) -> nn.Module:
    """A copy of an export whose packed binary convs run on the C++ kernels (raw integers; the
    rest of the model as it is); the export itself where the kernels cannot be built."""
    if kernels() is None:
        return inference
    accelerated = copy.deepcopy(inference)
    for parent in list(accelerated.modules()):
        for name, child in parent.named_children():
            if isinstance(child, PackedBinaryConv2d):
                setattr(parent, name, KernelBinaryConv2d(child, path))
    return accelerated


class FusedNetwork:
    """An export run fused on the C++ kernels, as its family's plan says
    (:mod:`ftbnn_exp.deploy.runners`): stem, then each unit's binary conv → folded BN →
    + shortcut → non-linear module → signs packed for the next unit, so activations reach
    each binary conv already packed (a doubled input is packed after its copy and paste).
    Stem, real shortcuts, pooling and FC stay PyTorch float, run as :class:`ExactPart` on the
    kernels' pool; ATen runs single-threaded on the calling thread meanwhile, so only the
    pool's threads work. ``names``: each module's qualified name, for refusals that say where
    a part is."""

    def __init__(self, plan: FusedPlan, path: int | None = None, stem_precision: str = "fp32",
                 names: Mapping[nn.Module, str] | None = None) -> None:
        names = names or {}
        units = plan.units
        if not units:
            raise InvalidArgument("the fused runner's plan has no binary units")
        for unit in units:
            if not (isinstance(unit.conv, PackedBinaryConv2d)
                    and isinstance(unit.bn, FoldedBatchNorm2d)):
                raise InvalidArgument(f"the fused runner runs exports; {names.get(unit.conv)} "
                                      f"is a {type(unit.conv).__name__}, not a packed binary "
                                      f"conv with a folded BN")
            check_binarizer(unit.binarize, names.get(unit.binarize, "a unit's binarizer"))
        self.stem = stem(plan.stem, stem_precision)
        # a unit packs its output for the next only where that input is not doubled first
        follows = [0 if unit.doubled else unit.conv.groups for unit in units[1:]] + [0]
        self.units = units
        self.kernels = [FastBinaryConv(unit.conv, path).fuse(
            unit.bn, unit.nonlinear, groups, names.get(unit.nonlinear, "a unit's module"))
            for unit, groups in zip(units, follows, strict=True)]
        self.shortcuts = [unit.shortcut if unit.shortcut in (None, IDENTITY_SHORTCUT)
                          else ExactPart(unit.shortcut) for unit in units]
        self.head = ExactPart(plan.head)

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        threads = torch.get_num_threads()
        with aten_threads(1):
            with record_function("ftbnn::stem"):
                x = self.stem(x, threads)
            planes = counts = None
            for unit, kernel, shortcut in zip(self.units, self.kernels, self.shortcuts,
                                              strict=True):
                residual = x if shortcut == IDENTITY_SHORTCUT else None
                if callable(shortcut):
                    with record_function("ftbnn::shortcut"):
                        residual = shortcut(x, threads)
                out = kernel(torch.cat([x, x], dim=1) if unit.doubled else x, planes, counts,
                             residual=residual, threads=threads)
                x = out[0]
                planes, counts = ((out[1], out[2]), out[3]) if kernel.next_groups else (None,
                                                                                          None)
            with record_function("ftbnn::head"):
                # the kernels leave x channels_last; ATen's average pool sums NCHW in another
                # order
                return self.head(x.contiguous(), threads)


@contextlib.contextmanager
def aten_threads(threads: int) -> Iterator[None]:
    """ATen and oneDNN on ``threads`` OpenMP threads on this thread only, inside the block
    (``torch.set_num_threads`` would also set the count new threads start from, and
    XNNPACK's pool)."""
    ops = kernels()
    previous = ops.set_aten_threads(threads)
    try:
        yield
    finally:
        ops.set_aten_threads(previous)


MIN_BAND_ROWS, MIN_BAND_VALUES = 8, 600_000
"""Output rows, and values written by the part's layers (:meth:`RowBands.written`), per band
at least: a band costs a task on the pool and its own operator calls, ~60 µs of one core,
and each band's Python steps take the GIL (measured on a 2-core AVX2 EPYC, issue 37, by
thread CPU time: FTBNN-18's 1×1 shortcut at 56², 250k values, took 43 % more CPU in two bands
than whole, the stems 12-16 % more; in wall time the derived models' stem, 903k values, was
no faster in two bands than whole on one thread). So FTBNN-18's stem (1.8M values; 1.2M
pooled first, :func:`pooled_first`) is split; the derived stems and the shortcuts run whole."""


TIMED_CALLS = 5
"""Calls of each exact way a part times on a shape's first call; their median counts (not
the best: on a 2-core VM the stem's bands ran in parallel in some calls and one after
another in most, best 2.8 ms and median 5.5 against 3.9 and 4.2 whole on one thread)."""


class ExactPart:
    """A real-valued part of the network (stem, shortcut, head) run the fastest way that
    gives the reference engine's bits at the same thread count, where the reference runs it
    whole in NCHW memory on ``threads`` OpenMP threads. Ways, in the order they are tried:

    - ``faster bands`` / ``faster nhwc``: where the part has a ``faster`` form (the stem
      pooled before its BN, :func:`pooled_first`), that form in NHWC, banded or whole (as
      below); tried before the part's own way of each kind;
    - ``bands``: NHWC, split into row bands (:mod:`ftbnn_exp.deploy.bands`) run in parallel
      on the kernels' pool, each single-threaded (``threads`` > 1 and a part tall enough);
    - ``nhwc`` / ``nchw``: whole, single-threaded: no OpenMP team to wake for a small layer
      (at 2 threads the 1×1 shortcuts were slower than at 1, issue 37);
    - ``nhwc@threads`` / ``nchw@threads``: whole on ``threads`` OpenMP threads; the last is
      the reference itself.

    oneDNN's NHWC convolutions are about twice as fast on one core, but whether they sum in
    the NCHW order depends on the CPU and the shape (a 1×1 conv at 6×6 did not, on a CPU where
    56×56 did), and so may a band's fewer rows, a single thread or another form of the same
    function. And whether bands pay depends on the machine (on a 2-core VM the stem's two
    bands took longer than the whole on one thread). So each (input shape, thread count)'s
    first call runs the reference and then every way on the kernels' pool (bands, NHWC, NCHW),
    and keeps the fastest (median of :data:`TIMED_CALLS` calls) of those that equal the
    reference bit for bit (:attr:`ways` says which); an OpenMP way (``@threads``) only where
    none does, the first exact one in the order above."""

    def __init__(self, run: Callable[[Tensor], Tensor], bands: RowBands | None = None,
                 faster: nn.Module | None = None) -> None:
        self.run = run
        self.bands = bands if bands is not None else (
            RowBands.of(run) if isinstance(run, nn.Module) else None)
        self.faster = faster
        self.faster_bands = RowBands.of(faster) if faster is not None else None
        self.ways: dict[tuple[tuple[int, ...], int], str] = {}
        self.shapes: dict[tuple[tuple[int, ...], int], torch.Size] = {}

    def band_count(self, x: Tensor, threads: int, faster: bool = False) -> int:
        """How many bands ``x`` is split into on ``threads`` threads (1: run whole), by the
        part's own bands or, ``faster``, its faster form's."""
        bands = self.faster_bands if faster else self.bands
        if bands is None:
            return 1
        rows = bands.heights(x.shape[2])[-1]
        return max(1, min(threads, rows // MIN_BAND_ROWS,
                           bands.written(x.shape) // MIN_BAND_VALUES))

    def way(self, name: str, x: Tensor, threads: int) -> Tensor:
        """The part run on ``x`` the way named ``name`` (class docstring)."""
        layout = torch.contiguous_format if name.startswith("nchw") else torch.channels_last
        x = x.contiguous(memory_format=layout)
        faster = name.startswith("faster ")
        if name.endswith("bands"):
            return self.banded(x, threads, faster)
        with aten_threads(threads if name.endswith("@threads") else 1):
            return (self.faster if faster else self.run)(x)

    def banded(self, x: Tensor, threads: int, faster: bool = False) -> Tensor:
        """The bands (the faster form's, ``faster``) run on the pool, each writing its rows of
        the output."""
        bands = self.faster_bands if faster else self.bands
        ranges = bands.split(x.shape[2], self.band_count(x, threads, faster))
        out = torch.empty(self.shapes[(tuple(x.shape), threads)],
                          memory_format=torch.channels_last)
        errors: list[BaseException] = []

        def task(i: int) -> None:
            try:
                with torch.no_grad():  # grad mode is per thread: the pool's start with it on
                    out[:, :, slice(*ranges[i])] = bands.run(x, *ranges[i])
            except BaseException as error:  # raised again on the calling thread
                errors.append(error)

        kernels().run_tasks(task, len(ranges), threads)
        if errors:
            raise errors[0]
        return out

    def candidates(self, kind: str, x: Tensor, threads: int) -> list[str]:
        """The ways of ``kind`` (``bands`` or ``nhwc``) to try, the faster form's first."""
        faster = [f"faster {kind}"] if self.faster is not None else []
        ways = [*faster, kind]
        if kind == "bands":
            return [w for w in ways if self.band_count(x, threads, w != kind) > 1]
        return ways

    def __call__(self, x: Tensor, threads: int | None = None) -> Tensor:
        threads = torch.get_num_threads() if threads is None else threads
        key = (tuple(x.shape), threads)
        if key in self.ways:
            return self.way(self.ways[key], x, threads)
        reference = self.way("nchw@threads", x, threads)
        self.shapes[key] = reference.shape
        pool = [*self.candidates("bands", x, threads), *self.candidates("nhwc", x, threads),
                "nchw"]
        exact = [w for w in pool if torch.equal(self.way(w, x, threads), reference)]
        if exact:
            self.ways[key] = min(exact, key=lambda w: self.seconds(w, x, threads))
        else:
            fallback = ["nhwc@threads"] if threads > 1 else []
            self.ways[key] = next((w for w in fallback if torch.equal(
                self.way(w, x, threads), reference)), "nchw@threads")
        return reference

    def seconds(self, name: str, x: Tensor, threads: int) -> float:
        """The median of :data:`TIMED_CALLS` calls of way ``name`` on ``x``."""
        return statistics.median(timed_rounds(lambda: self.way(name, x, threads), TIMED_CALLS))


STEM_PRECISIONS = ("fp32", "bf16")


class PooledFirstStem(nn.Sequential):
    """``conv → max-pool → BN`` (:func:`pooled_first`), the pool in NHWC memory; a sequence,
    so that it splits into row bands (:class:`~ftbnn_exp.deploy.bands.RowBands`) as the stem
    it stands for does."""

    def __init__(self, conv: nn.Conv2d, pool: nn.MaxPool2d, bn: nn.BatchNorm2d) -> None:
        super().__init__(conv, pool, bn)

    def forward(self, x: Tensor) -> Tensor:
        conv, pool, bn = self
        return bn(pool(conv(x).contiguous(memory_format=torch.channels_last)))


def pooled_first(layers: nn.Module) -> PooledFirstStem | None:
    """The stem ``conv → BN → max-pool`` (Fig. 4a) as ``conv' → max-pool → BN'``, the same
    bits with the BN on a quarter of the pixels. A BN in eval is one increasing function per
    channel where its scale is ≥ 0, and rounding keeps the order, so the maximum of BN's
    outputs is BN of the maximum. Where the scale is negative it decreases, so conv' and BN'
    negate that channel: conv' sums the negated products in the same order (exact: -y), and
    BN' (weight and running mean negated) computes ``(-α)·m + β``, which is ``α·(-m) + β``
    bit for bit; max(-y) = -min(y). None for any other stem (the layer-by-layer run is used);
    :class:`ExactPart` checks the bits on each shape's first call in any case."""
    parts = list(layers)
    if not (len(parts) == 3 and isinstance(parts[0], nn.Conv2d)
            and isinstance(parts[1], nn.BatchNorm2d) and isinstance(parts[2], nn.MaxPool2d)
            and parts[1].running_mean is not None):
        return None
    conv, bn, pool = (copy.deepcopy(part) for part in parts)
    with torch.no_grad():
        if bn.weight is not None:
            sign = torch.where(bn.weight < 0, -1.0, 1.0)
            conv.weight.mul_(sign.view(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.mul_(sign)
            bn.weight.mul_(sign)
            bn.running_mean.mul_(sign)
    return PooledFirstStem(conv, pool, bn)


def stem(layers: nn.Module, precision: str = "fp32") -> Callable[..., Tensor]:
    """The stem as the export runs it, its max-pool always in NHWC memory (ATen's NCHW
    max-pool is slow on one core; maxima are exact in any order), pooled before its BN where
    that gives the same bits (:func:`pooled_first`). ``bf16``, opt-in: the stem under bf16
    autocast (AMX / AVX-512 BF16 through oneDNN), several times faster there and not
    bit-exact: a sign near 0 may flip downstream (``deploy verify --stem bf16`` says how much
    the predictions and logits move). Without native bf16 (:func:`native_bf16`) it is slower
    than fp32: oneDNN converts around fp32 arithmetic."""
    if precision not in STEM_PRECISIONS:
        raise ValueError(f"stem precision {precision!r}; allowed: {', '.join(STEM_PRECISIONS)}")

    def run(x: Tensor) -> Tensor:
        for layer in layers:
            if isinstance(layer, nn.MaxPool2d):
                x = x.contiguous(memory_format=torch.channels_last)
            x = layer(x)
        return x

    if precision == "fp32":
        return ExactPart(run, RowBands.of(layers), pooled_first(layers))

    def run_bf16(x: Tensor, threads: int | None = None) -> Tensor:
        with aten_threads(threads or torch.get_num_threads()), torch.autocast(
                "cpu", dtype=torch.bfloat16):
            return run(x.contiguous(memory_format=torch.channels_last)).float()

    return run_bf16


def block_names(model: nn.Module) -> dict[nn.Module, str]:
    """Each module's qualified name, for messages that say where a part is."""
    return {module: name for name, module in model.named_modules()}


def fused(inference: nn.Module, family: str, path: int | None = None,
          stem_precision: str = "fp32") -> FusedNetwork:
    """The export run whole by family ``family``'s fused runner; a one-line refusal where the
    family declares none or its plan or a part has no fused form."""
    plan_of = runner_of(family)
    if plan_of is None:
        raise InvalidArgument(f"{family} has no fused runner")
    return FusedNetwork(plan_of(inference), path, stem_precision, block_names(inference))


def fastest(inference: nn.Module, family: str, path: int | None = None,
            stem_precision: str = "fp32") -> tuple[Callable[[Tensor], Tensor], str]:
    """The fastest exact way to run an export of family ``family``, and its name: the
    family's fused runner where it has one (:mod:`ftbnn_exp.deploy.runners`) and every part
    has a fused form (with ``stem_precision="bf16"`` not exact, see :func:`stem`); else the
    binary convs on the kernels (:func:`accelerate`), the name saying why; the export itself
    (reference engine) without kernels."""
    if kernels() is None:
        return inference, "reference engine"
    if runner_of(family) is None:
        return accelerate(inference, path), f"C++ binary convs ({family} has no fused runner)"
    try:
        runner = fused(inference, family, path, stem_precision)
    except InvalidArgument as refusal:
        return accelerate(inference, path), (f"C++ binary convs (fell back from {family}'s "
                                             f"fused runner: {refusal})")
    bf16 = ", bf16 stem (not bit-exact)" if stem_precision == "bf16" else ""
    return runner, f"fused blocks ({family}'s runner{bf16})"


@dataclass(frozen=True)
class PathCheck:
    """One instruction-set path's runner against the reference engine on the same images:
    bit for bit, the share of images with the same top-1, the largest logit difference."""

    exact: bool
    top1_same: float
    max_logit_diff: float

    @classmethod
    def of(cls, logits: Tensor, reference: Tensor) -> PathCheck:
        return cls(torch.equal(logits, reference),
                   (logits.argmax(1) == reference.argmax(1)).float().mean().item(),
                   (logits - reference).abs().max().item())


def check_paths(inference: nn.Module, images: Tensor, family: str,
                stem_precision: str = "fp32") -> tuple[str, dict[str, PathCheck]]:
    """The runner :func:`fastest` picks for this export (its name: the fused runner, or the
    fall-back and why) and, per instruction-set path of this CPU, how its logits on
    ``images`` compare with the reference engine's (empty without the kernels)."""
    results, how = {}, "reference engine"
    with torch.no_grad():
        reference = inference(images)
        for path in supported_paths():
            runner, how = fastest(inference, family, PATHS.index(path), stem_precision)
            results[path] = PathCheck.of(runner(images), reference)
    return how, results


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX-512 BF16 or AMX); elsewhere a bf16 stem
    converts to and from fp32 around fp32 arithmetic (measured slower, see
    ``benchmarks/real_layers.py``)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
