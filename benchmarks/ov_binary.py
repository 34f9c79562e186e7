"""``make bench-deploy``: OpenVINO's own binary convolution as a peer (issue 37, item 4).

Every binary conv of FTBNN-18 is built with OpenVINO's opset (``BinaryConvolution-1``, mode
``xnor-popcount``, which its CPU plugin runs on a JIT kernel) and timed beside ours on the
input one forward pass of our fused runner gave that layer (:func:`benchmarks.ceiling.
recorded_calls`), at 1 thread and at all cores (OpenVINO: ``INFERENCE_NUM_THREADS``; ours:
``torch.set_num_threads``, which the kernels' pool follows). Each round times every engine of
a layer back to back; min / median / max over the rounds. OpenVINO's output is checked equal
to ours bit for bit at each thread count.

How the two compute the same integers (OpenVINO 2026.4's CPU plugin, measured; the spec says
neither the bit order nor what ``pad_value`` does; ``tests/test_ov_binary.py`` holds both):

- weights: a ``u1`` constant ``[O, C, 3, 3]``, bit 1 = +1, 0 = -1, the elements in C order
  packed 8 to a byte, least significant bit first (:func:`pack_u1`);
- input: float (the plugin refuses a ``u1`` input), binarized as ``x > 0`` → +1, else -1, so
  a 0 counts as -1 where ours counts it as 0. Both engines get the same ±1 activations: the
  layer's recorded input with 0 → -1. FTBNN-18's convs after a ReLU (stage ends) see {0, 1}
  in the network, where ours takes its {0, 1} formula (timed as the network runs it by
  ``ceiling.py``); here both take ±1;
- padding: ``pad_value=0.0`` leaves padded positions out of the sum, ``out = K_valid −
  2·popcount(x ⊕ w)`` over the taps inside the image: our kernels' formula, exactly.
  ``pad_value`` 1.0 and -1.0 pad with +1 and -1;
- where they differ: with input channels not a multiple of 8 OpenVINO's outputs are wrong,
  even with every weight -1 (the channel tail of its input's binarization); FTBNN-18's are
  multiples of 64, and such a layer is marked, not compared. ``BinaryConvolution-1`` has no
  groups (L34-G5's grouped convs are not built).

Columns (ms per call): ``OV``, OpenVINO's infer request on the float ±1 input (a reorder
binarizing it into its packed NHWC layout, the conv, a reorder of its NHWC float output to
NCHW); ``OV conv``, its conv node alone (its own profiler, ``PERF_COUNT``); ``ours float
in``, packing the same float input and the conv (the like-for-like call; ``ratio`` = OV /
this); ``ours packed``, the conv on packed planes, as the network calls it after a fused
output step; ``fused``, the network's own call on its recorded input (output step: BN,
residual, FPReLU, the next conv's planes).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmarks.ceiling import layer_of, recorded_calls
from benchmarks.common import baseline, trained_like
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.rate import calls_for
from ftbnn_exp.deploy.timing import Spread
from ftbnn_exp.timing import seconds_per_call

MISSING = "OpenVINO not installed (pip install -e .[bench])"
PAD_VALUE = 0.0
"""OpenVINO's ``pad_value`` that leaves padding out of the sum, as our kernels do."""
CHANNEL_MULTIPLE = 8
"""OpenVINO's binary conv is exact only for input channels in multiples of this (measured)."""
ENGINES = ("OV", "OV conv", "ours float in", "ours packed", "fused")


def available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def pack_u1(weight: Tensor) -> np.ndarray:
    """A ±1 weight ``[O, C, k, k]`` as OpenVINO's ``u1`` bytes: bit 1 for +1, the elements in
    C order, least significant bit first in each byte (what its CPU plugin reads)."""
    bits = (weight > 0).reshape(-1).numpy().astype(np.uint8)
    return np.packbits(bits, bitorder="little")


def bipolar(x: Tensor) -> Tensor:
    """The ±1 activations both engines get: ``x > 0`` → +1, else -1 (OpenVINO's rule)."""
    return torch.where(x > 0, 1.0, -1.0)


def exact_here(in_channels: int, groups: int, weight_zeros: bool = False) -> str | None:
    """Why OpenVINO's binary conv cannot give our integers for this conv, or None."""
    if weight_zeros:
        return "a weight is 0: OpenVINO's u1 weights are ±1"
    if groups != 1:
        return f"{groups} groups: BinaryConvolution-1 has none"
    if in_channels % CHANNEL_MULTIPLE:
        return (f"{in_channels} input channels: OpenVINO is exact only for multiples of "
                f"{CHANNEL_MULTIPLE}")
    return None


class OVBinaryConv:
    """One binary conv on OpenVINO's CPU plugin, compiled for a thread count and an input
    shape: :meth:`__call__` answers its output (float, NCHW); :meth:`run` is the timed call
    (the input set once, shared with numpy; no output copy)."""

    def __init__(self, weight: Tensor, stride: int, padding: int, input_shape: tuple[int, ...],
                 threads: int, pad_value: float = PAD_VALUE, profile: bool = False) -> None:
        import openvino as ov
        import openvino.opset1 as ops

        u1 = ov.Tensor(pack_u1(weight), ov.Shape(list(weight.shape)), ov.Type.u1)
        data = ops.parameter(list(input_shape), ov.Type.f32)
        conv = ops.binary_convolution(data, ov.op.Constant(u1), [stride] * 2, [padding] * 2,
                                      [padding] * 2, [1, 1], "xnor-popcount", pad_value)
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                  "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": profile}
        compiled = ov.Core().compile_model(ov.Model([conv], [data]), "CPU", config)
        self.request = compiled.create_infer_request()
        self.input: np.ndarray | None = None

    def set_input(self, x: Tensor) -> None:
        import openvino as ov

        self.input = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        self.request.set_input_tensor(ov.Tensor(self.input, shared_memory=True))

    def run(self) -> None:
        self.request.infer()

    def __call__(self, x: Tensor) -> Tensor:
        self.set_input(x)
        self.run()
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())

    def conv_ms(self) -> float:
        """The conv node's time in the last inference (a request compiled with ``profile``)."""
        times = [info.real_time.total_seconds() for info in self.request.profiling_info
                 if info.node_type == "BinaryConvolution"]
        return 1e3 * sum(times)


def equal(ov_out: Tensor, ours: Tensor) -> bool:
    """OpenVINO's float output against our integers, bit for bit (small whole numbers)."""
    return torch.equal(ov_out.to(torch.int64), ours.contiguous().to(torch.int64))


@dataclass
class Row:
    """One recorded binary conv, its calls on both engines and its samples (ms)."""

    name: str
    shape: str
    calls: dict[str, Callable[[], object]]
    profiled: OVBinaryConv | None
    gap: str | None
    equal: bool | None = None
    samples: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENGINES})


def build_rows(image_size: int, threads: int) -> list[Row]:
    """Every binary conv of FTBNN-18 on both engines, at ``threads``, with its input."""
    torch.manual_seed(0)  # the same weights every run
    model = trained_like(baseline(image_size)).eval()
    rows = []
    for label, kernel, args, kwargs in recorded_calls(model, image_size):
        layer = layer_of(label, kernel, args, kwargs)
        conv, packed = kernel.conv, kernel.conv.conv
        x = bipolar(args[0]).contiguous(memory_format=torch.channels_last)
        xs, xn, counts = conv.planes(x)
        calls: dict[str, Callable[[], object]] = {
            "ours float in": lambda c=conv, x=x: c(x),
            "ours packed": lambda c=conv, p=(xs, xn), n=counts: c(None, p, n),
            "fused": layer.fused}
        gap = exact_here(packed.in_channels, packed.groups, conv.weights_have_zeros)
        row = Row(label, layer.shape, calls, None, gap)
        if packed.groups == 1:
            weight, shape = packed.binary_weight(), tuple(x.shape)
            ov_conv = OVBinaryConv(weight, packed.stride, packed.padding, shape, threads)
            profiled = OVBinaryConv(weight, packed.stride, packed.padding, shape, threads,
                                    profile=True)
            with torch.no_grad():
                if gap is None:
                    row.equal = equal(ov_conv(x), conv(x)[0])
            ov_conv.set_input(x)
            profiled.set_input(x)
            profiled.run()  # its first inference is not a sample
            row.calls = {"OV": ov_conv.run, **calls}
            row.profiled = profiled
        rows.append(row)
    return rows


def measure(rows: list[Row], rounds: int) -> None:
    """Each round: per layer, every engine's call back to back (samples of ~2 ms each), and
    one profiled OpenVINO call for its conv node's time."""
    counts = [{name: calls_for(call) for name, call in row.calls.items()} for row in rows]
    with torch.no_grad():
        for _ in range(rounds):
            for row, n in zip(rows, counts, strict=True):
                for name, call in row.calls.items():
                    row.samples[name].append(1e3 * seconds_per_call(call, n[name]))
                if row.profiled is not None:
                    row.profiled.run()
                    row.samples["OV conv"].append(row.profiled.conv_ms())


def cell(values: list[float]) -> str:
    if not values:
        return f"{'—':>21s}"
    low, mid, high = Spread.of(values)
    return f"{mid:7.3f} ({low:6.3f}–{high:6.3f})"


def report(rows: list[Row], threads: int, rounds: int) -> None:
    print(f"  {threads} thread(s), {rounds} rounds; ms per call: median (min–max)")
    print(f"  {'layer':12s} {'shape':22s} " + " ".join(f"{e:>21s}" for e in ENGINES)
          + f" {'OV/ours':>7s}  equal")
    for row in rows:
        ov, ours = row.samples["OV"], row.samples["ours float in"]
        ratio = f"{statistics.median(ov) / statistics.median(ours):6.2f}×" if ov else "      —"
        same = row.gap or ("yes" if row.equal else "NO")
        print(f"  {row.name:12s} {row.shape:22s} "
              + " ".join(cell(row.samples[e]) for e in ENGINES) + f" {ratio}  {same}")
    built = [row for row in rows if row.samples["OV"]]
    totals = {e: sum(statistics.median(row.samples[e]) for row in built) for e in ENGINES}
    print(f"  all {len(built)} built: " + ", ".join(f"{e} {ms:.2f} ms"
                                                   for e, ms in totals.items())
          + f"; OV / ours float in {totals['OV'] / totals['ours float in']:.2f}×, OV conv / "
            f"ours packed {totals['OV conv'] / totals['ours packed']:.2f}×; bit-exact on "
            f"{sum(bool(row.equal) for row in built)} of {len(built)}")


def section(rounds: int, image_size: int = 224) -> None:
    """The rows ``make bench-deploy`` prints (one line without OpenVINO)."""
    if not available():
        print(MISSING)
        return
    import openvino

    cores = os.cpu_count() or 1
    print(f"OpenVINO {openvino.__version__} BinaryConvolution-1 (CPU plugin) vs ours, every "
          f"binary conv of FTBNN-18 at {image_size} px on its recorded input as ±1 (0 → -1), "
          f"batch 1, pad_value {PAD_VALUE}; ratio = OV / ours float in (like for like)")
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        rows = build_rows(image_size, threads)
        measure(rows, rounds)
        report(rows, threads, rounds)
    torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit(f"error: --repeats {args.repeats}: allowed: a whole number from 1")
    if args.image_size < 32:
        raise SystemExit(f"error: --image-size {args.image_size}: allowed: 32 pixels or more")
    if fast.kernels() is None:
        raise SystemExit("error: the C++ kernels could not be built here (see the warning)")
    section(args.repeats, args.image_size)


if __name__ == "__main__":
    main()
