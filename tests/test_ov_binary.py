"""OpenVINO's BinaryConvolution-1 as the deploy bench builds it (benchmarks/ov_binary.py): on
the same ±1 inputs its output equals our kernel's and the exact reference's, bit for bit,
through padded borders, strides 1 and 2, channels within one 64-bit word, several words and a
word plus a tail, and odd output counts. A wrong weight bit order or pad value turns these
red. Skipped without OpenVINO (the ``bench`` extra) or without the C++ kernels."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from benchmarks import ov_binary
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.bitops import binary_conv2d, pack_weights
from ftbnn_exp.deploy.layers import PackedBinaryConv2d
from ftbnn_exp.nn import BinaryConv2d

# (in, out, stride, height, width): one word at 8 and 64 channels, a word and a tail at 72,
# three words at 192; odd outputs; odd sizes so stride 2 meets the far border unevenly
SHAPES = [(64, 8, 1, 5, 5), (8, 7, 2, 5, 6), (72, 3, 2, 6, 7), (192, 9, 1, 3, 4),
          (24, 5, 1, 4, 3)]


@pytest.fixture
def openvino():
    if fast.kernels() is None:
        pytest.skip("no C++ toolchain here")
    return pytest.importorskip("openvino")


def layer(cin: int, cout: int, stride: int, height: int, width: int, seed: int = 0
          ) -> tuple[PackedBinaryConv2d, torch.Tensor]:
    """A packed binary conv with ±1 weights and a ±1 input of batch 2 for it."""
    generator = torch.Generator().manual_seed(seed)
    conv = BinaryConv2d(cin, cout, 3, stride=stride, padding=1)
    with torch.no_grad():
        conv.weight.normal_(generator=generator)
    x = ov_binary.bipolar(torch.randn(2, cin, height, width, generator=generator))
    return PackedBinaryConv2d.from_conv(conv), x


def outputs(packed: PackedBinaryConv2d, x: torch.Tensor, threads: int = 1
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(OpenVINO's, our kernel's, the reference's) output for ``x``."""
    weight = packed.binary_weight()
    ov = ov_binary.OVBinaryConv(weight, packed.stride, packed.padding, tuple(x.shape), threads)
    ours = fast.FastBinaryConv(packed)(x.contiguous(memory_format=torch.channels_last))[0]
    reference = binary_conv2d(x, *pack_weights(weight), 3, packed.stride, packed.padding)
    return ov(x), ours, reference


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_openvino_equals_our_kernel_and_the_reference(openvino, shape):
    packed, x = layer(*shape)
    ov, ours, reference = outputs(packed, x)
    assert torch.equal(ours, reference)
    assert ov_binary.equal(ov, reference) and ov_binary.equal(ov, ours)
    assert ov_binary.exact_here(shape[0], 1) is None


def test_openvino_is_exact_at_several_threads(openvino):
    packed, x = layer(128, 16, 1, 9, 9, seed=1)
    ov, ours, _ = outputs(packed, x, threads=2)
    assert ov_binary.equal(ov, ours)


def test_padding_is_left_out_of_the_sum_not_filled_with_a_sign(openvino):
    """pad_value 0 leaves the padded taps out; ±1 fill them, which changes exactly the border
    pixels (a mutation of PAD_VALUE turns the equality tests red through these)."""
    packed, x = layer(64, 4, 1, 5, 5, seed=2)
    weight = packed.binary_weight()
    exact = binary_conv2d(x, *pack_weights(weight), 3, 1, 1)
    for fill in (1.0, -1.0):
        filled = ov_binary.OVBinaryConv(weight, 1, 1, tuple(x.shape), 1, pad_value=fill)(x)
        differs = filled.to(torch.int32) != exact
        assert differs[..., 1:-1, 1:-1].sum() == 0 and differs.any()


def test_a_channel_count_off_a_multiple_of_8_is_marked_not_compared(openvino):
    """The measured gap: OpenVINO's outputs are wrong there; the bench says so per layer."""
    packed, x = layer(5, 8, 1, 6, 6)
    ov, ours, _ = outputs(packed, x)
    assert not ov_binary.equal(ov, ours)
    assert "multiples of 8" in ov_binary.exact_here(5, 1)
    assert "groups" in ov_binary.exact_here(64, 2)


def test_without_openvino_the_bench_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(ov_binary, "available", lambda: False)
    ov_binary.section(rounds=1)
    assert capsys.readouterr().out == "OpenVINO not installed (pip install -e .[bench])\n"


@pytest.mark.slow  # an ONNX export and a whole network's compile
def test_whole_ftbnn18_runs_every_binary_conv_as_binary_convolution(openvino):
    """The export with each activation Sign as a 2-level FakeQuantize: all 16 binary convs
    compile to BinaryConvolution and the logits are ours up to the float parts' rounding
    (OpenVINO's fp32 run of the same export differs from ours by as much, ~1e-4); a wrong
    threshold or a ±1 binarization after a ReLU moves them by tens or gives NaN."""
    pytest.importorskip("onnx")
    import openvino as ov

    from benchmarks import peers
    from benchmarks.common import baseline, trained_like
    from ftbnn_exp.deploy.layers import to_inference

    torch.manual_seed(0)
    model = trained_like(baseline(32)).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as folder:
        network = ov_binary.binarized(peers.export_onnx(model, x, Path(folder) / "m.onnx"))
    compiled = ov.Core().compile_model(network, "CPU", {"INFERENCE_NUM_THREADS": 1})
    kinds = [n.get_rt_info()["layerType"].astype(str)
             for n in compiled.get_runtime_model().get_ordered_ops()]
    assert kinds.count("BinaryConvolution") == 16
    logits = torch.from_numpy(compiled({0: x.numpy()})[0].copy())
    with torch.no_grad():
        ours = fast.fastest(to_inference(model), "ftbnn_resnet")[0](x)
    assert (logits - ours).abs().max() < 1e-3 and logits.argmax() == ours.argmax()


@pytest.mark.slow
def test_the_bench_prints_every_layer_bit_exact_at_each_thread_count(openvino):
    pytest.importorskip("onnx")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "benchmarks.ov_binary", "--repeats", "1",
                           "--image-size", "32"], cwd=root, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = sorted({1, os.cpu_count() or 1})
    rows = [line for line in done.stdout.splitlines() if line.startswith("  stages.")]
    assert len(rows) == 16 * len(counts) and all(line.endswith("  yes") for line in rows)
    assert done.stdout.count("bit-exact on 16 of 16") == len(counts)
    assert done.stdout.count("16 of 16 binary convs ran as BinaryConvolution") == len(counts)
