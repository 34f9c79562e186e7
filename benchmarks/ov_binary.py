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

Then the whole FTBNN-18 on OpenVINO with every binary conv as ``BinaryConvolution``
(:func:`binarized`) beside our fused runner, logits compared (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmarks import peers
from benchmarks.ceiling import layer_of, recorded_calls
from benchmarks.common import baseline, trained_like
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.layers import to_inference
from ftbnn_exp.deploy.rate import calls_for
from ftbnn_exp.deploy.timing import Spread
from ftbnn_exp.nn import BinaryConv2d
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


BINARIZE_HIGH = 1e-30
"""FakeQuantize's ``input_high`` for the sign threshold: ``x ≤ 0`` → low, ``x > 0`` → +1
(``input_low = input_high = 0``, OpenVINO's usual form, gives NaN with outputs -1/+1 on this
plugin, measured; an activation in (0, 5e-31) would round to low)."""


def binarized(path: Path) -> Any:
    """The ONNX export of a binary model (``Sign`` → ``Conv``, ±1 weight constants) with each
    activation ``Sign`` replaced by OpenVINO's binarization (FakeQuantize, 2 levels), which its
    CPU plugin compiles with the conv into ``BinaryConvolution``: low 0 after a ReLU (inputs in
    {0, 1}: the plugin pads those with -1 and corrects exactly), else -1 (padding left out)."""
    import openvino as ov
    import openvino.opset1 as ops

    def constant(value: float) -> Any:
        return ops.constant(np.array(value, dtype=np.float32))

    model = ov.Core().read_model(str(path))
    for node in model.get_ordered_ops():
        source = node.input_value(0) if node.get_type_name() == "Sign" else None
        if source is None or source.get_node().get_type_name() == "Constant":
            continue
        low = 0.0 if source.get_node().get_type_name() == "Relu" else -1.0
        binarize = ops.fake_quantize(source, constant(0.0), constant(BINARIZE_HIGH),
                                     constant(low), constant(1.0), 2)
        node.output(0).replace(binarize.output(0))
    return model


def whole_network(image_size: int, rounds: int) -> None:
    """FTBNN-18 whole: OpenVINO with its binary convs as BinaryConvolution (:func:`binarized`)
    beside our fused runner, same input, rounds alternated; logits compared (the float parts,
    BN, FPReLU, the stem, are fused and rounded differently, as OpenVINO's fp32 run of the same
    export is)."""
    import openvino as ov

    torch.manual_seed(0)
    model = trained_like(baseline(image_size)).eval()
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    ours, _ = fast.fastest(to_inference(model), "ftbnn_resnet")
    with tempfile.TemporaryDirectory() as folder:
        network = binarized(peers.export_onnx(model, x, Path(folder) / "ftbnn18.onnx"))
    convs = sum(isinstance(m, BinaryConv2d) for m in model.modules())
    print(f"whole FTBNN-18 at {image_size} px, batch 1: OpenVINO (its ONNX export, each "
          f"activation Sign as a 2-level FakeQuantize) vs ours (fused runner), {rounds} rounds")
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        compiled = ov.Core().compile_model(network, "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
        built = sum(node.get_rt_info()["layerType"].astype(str) == "BinaryConvolution"
                    for node in compiled.get_runtime_model().get_ordered_ops())
        request = compiled.create_infer_request()
        ov_x = np.ascontiguousarray(x.numpy())
        request.set_input_tensor(ov.Tensor(ov_x, shared_memory=True))
        request.infer()
        with torch.no_grad():
            reference = ours(x)
        logits = torch.from_numpy(request.get_output_tensor(0).data.copy())
        calls = {"OV": request.infer, "ours": lambda: ours(x)}
        samples: dict[str, list[float]] = {name: [] for name in calls}
        with torch.no_grad():
            for _ in range(rounds):
                for name, call in calls.items():
                    samples[name].append(1e3 * seconds_per_call(call))
        ratio = statistics.median(samples["OV"]) / statistics.median(samples["ours"])
        print(f"  {threads} thread(s): OV {cell(samples['OV'])} ms, ours {cell(samples['ours'])}"
              f" ms, OV / ours {ratio:.2f}×; {built} of {convs} binary convs ran as "
              f"BinaryConvolution; logits max |OV − ours| "
              f"{(logits - reference).abs().max().item():.2g}, top-1 "
              f"{'same' if logits.argmax() == reference.argmax() else 'DIFFERENT'}")
    torch.set_num_threads(1)


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
    if importlib.util.find_spec("onnx") is None:
        print("whole FTBNN-18 on OpenVINO's BinaryConvolution: onnx not installed (pip install "
              "-e .[bench])")
        return
    whole_network(image_size, rounds)


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
