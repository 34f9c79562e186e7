"""The C++ bit-packed kernels: every instruction-set path this CPU has is bit-exact against the
reference engine, raw and with the output step fused. Skipped, with the reason, where no
compiler can build them (the package then uses the reference)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.bitops import binary_conv2d, pack_weights, unpack
from ftbnn_exp.deploy.layers import FoldedBatchNorm2d, PackedBinaryConv2d
from ftbnn_exp.nn import BinaryConv2d, FPReLU

pytestmark = pytest.mark.skipif(fast.kernels() is None, reason="no C++ toolchain here")
PATHS = [p for p in fast.PATHS if fast.kernels() is not None and p in fast.supported_paths()]
# (in, out, stride, groups, size): the binary convs of the baseline, Bi-Real and derived models,
# with 1, 2 and 3 words per pixel (the AVX-512BW window code has its own case for each)
SHAPES = [(64, 64, 1, 1, 9), (64, 128, 2, 1, 9), (130, 70, 1, 1, 6), (48, 48, 1, 3, 7),
          (40, 40, 2, 8, 8), (32, 198, 1, 1, 5), (100, 40, 1, 1, 7)]


def _conv(cin: int, cout: int, stride: int, groups: int, generator, zero: bool = False):
    conv = BinaryConv2d(cin, cout, 3, stride=stride, padding=1, groups=groups)
    with torch.no_grad():
        conv.weight.normal_(generator=generator)
        if zero:
            conv.weight[0, 0, 0, 0] = 0.0
    return conv, PackedBinaryConv2d.from_conv(conv)


def _input(kind: str, channels: int, size: int, generator) -> torch.Tensor:
    x = torch.randn(2, channels, size, size, generator=generator)
    if kind == "relu":
        x = x.relu()
    elif kind == "zeros":
        x[0, 0, :2] = 0.0
    return torch.sign(x)


def test_this_cpu_reports_its_paths():
    assert PATHS and PATHS[0] == "popcnt"
    assert fast.PATHS[fast.best_path()] == PATHS[-1]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["bipolar", "relu", "zeros", "zero-weight"])
@pytest.mark.parametrize(("cin", "cout", "stride", "groups", "size"), SHAPES)
def test_every_path_is_bit_exact(path, kind, cin, cout, stride, groups, size, generator):
    conv, packed = _conv(cin, cout, stride, groups, generator, zero=kind == "zero-weight")
    x = _input("bipolar" if kind == "zero-weight" else kind, cin, size, generator)
    expected = binary_conv2d(x, *pack_weights(conv.weight.detach()), 3, stride, 1, groups)
    (got,) = fast.FastBinaryConv(packed, fast.PATHS.index(path))(x)
    assert torch.equal(got, expected)


def _check_fused(path, nonlinear, shape, generator, channels_last=False):
    cin, cout, stride, groups, size, next_groups = shape
    conv, packed = _conv(cin, cout, stride, groups, generator)
    bn = nn.BatchNorm2d(cout).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-20, 20, generator=generator)
        bn.running_var.uniform_(1, 50, generator=generator)
        bn.weight.uniform_(0.5, 1.5, generator=generator)
    folded = FoldedBatchNorm2d.fold(bn)
    module = {"identity": nn.Identity(), "relu": nn.ReLU(), "fprelu": FPReLU(cout),
              "prelu": nn.PReLU(cout)}[nonlinear]
    if nonlinear == "fprelu":
        with torch.no_grad():
            module.negative.uniform_(-1, 1, generator=generator)
    x = _input("bipolar", cin, size, generator)
    out_size = (size - 1) // stride + 1
    residual = torch.randn(2, cout, out_size, out_size, generator=generator)
    if channels_last:
        x, residual = (t.contiguous(memory_format=torch.channels_last) for t in (x, residual))
    kernel = fast.FastBinaryConv(packed, fast.PATHS.index(path)).fuse(folded, module,
                                                                       next_groups)
    out, signs, nonzero, counts = kernel(x, residual=residual)
    with torch.no_grad():
        z = F.conv2d(x, conv.weight.sign(), stride=stride, padding=1, groups=groups)
        expected = module(folded(z) + residual)
    assert torch.equal(out, expected)
    # packed by scalar code: each path's own packing in the kernel is checked against it
    want_signs, want_nonzero, _ = kernel.conv.ops.pack_nhwc(expected, next_groups, 1, 0)
    assert torch.equal(signs, want_signs) and torch.equal(nonzero, want_nonzero)
    assert counts.tolist() == [int((expected < 0).sum()), int((expected == 0).sum())]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nonlinear", ["identity", "relu", "fprelu", "prelu"])
def test_fused_output_equals_pytorch_and_packs_the_next_input(path, nonlinear, generator):
    _check_fused(path, nonlinear, (64, 64, 1, 1, 9, 2), generator)


# (in, out, stride, groups, size, next groups): channels in 16s or not (the AVX-512 output
# step's full and masked pieces; the general step on the other paths), next groups with
# partial words, grouped convs
FUSED_SHAPES = [(64, 64, 1, 1, 9, 1), (64, 128, 2, 1, 9, 1), (130, 70, 1, 1, 6, 2),
                (48, 48, 1, 3, 7, 3), (40, 40, 2, 8, 8, 8), (96, 96, 1, 1, 5, 2),
                (127, 127, 1, 1, 6, 1), (90, 90, 1, 5, 6, 5), (180, 180, 2, 5, 7, 5)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", FUSED_SHAPES)
def test_fused_output_is_exact_for_every_layout(path, shape, generator):
    _check_fused(path, "fprelu", shape, generator, channels_last=True)


def test_fast_baseline_predicts_as_the_exported_model(generator):
    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.models import ftbnn_resnet
    from ftbnn_exp.nn import NonLinearitySchedule

    # 96 px: the ImageNet stem, max-pool included
    model = ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, num_classes=10,
                         image_size=96).eval()
    inference = to_inference(model)
    x = torch.randn(2, 3, 96, 96, generator=generator)
    with torch.no_grad():
        reference = inference(x)
    for path in PATHS:
        runner = fast.fused(inference, "ftbnn_resnet", fast.PATHS.index(path))
        assert torch.equal(runner(x), reference)
    accelerated = fast.accelerate(to_inference(model))
    with torch.no_grad():
        assert torch.equal(accelerated(x), reference)


def test_kernels_run_on_every_thread_and_give_the_same_bits_at_any_count(generator):
    """The kernels run a layer on torch.get_num_threads() threads of their own pool, and
    each output is one thread's work in one order: 1 and 2 threads give identical kernel
    results, and the whole network equals the reference engine at either count (PyTorch's
    own real-valued layers may round differently from one thread count to another)."""
    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.models import ftbnn_resnet
    from ftbnn_exp.nn import NonLinearitySchedule

    before = torch.get_num_threads()
    model = ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, num_classes=10,
                         image_size=64).eval()
    inference = to_inference(model)
    x = torch.randn(2, 3, 64, 64, generator=generator)
    _, packed = _conv(64, 128, 2, 2, generator)
    bn, act = FoldedBatchNorm2d(128), FPReLU(128)
    with torch.no_grad():
        bn.scale.uniform_(0.5, 2, generator=generator)
        act.negative.uniform_(-1, 1, generator=generator)
    signs = _input("bipolar", 64, 13, generator)
    try:
        results = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert fast.kernels().parallel_threads() == threads
            with torch.no_grad():
                reference = inference(x)
                for path in PATHS:
                    runner = fast.fused(inference, "ftbnn_resnet", fast.PATHS.index(path))
                    assert torch.equal(runner(x), reference) and torch.equal(runner(x),
                                                                             reference)
            results[threads] = [
                fast.FastBinaryConv(packed, fast.PATHS.index(path)).fuse(bn, act, 2)(signs)
                for path in PATHS]
    finally:
        torch.set_num_threads(before)
    for one, two in zip(results[1], results[2], strict=True):
        assert len(one) == 4 and all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


@pytest.mark.parametrize(("num_classes", "size"), [(10, 96), (1000, 96)])
def test_fast_baseline_is_exact_where_nhwc_shortcuts_round_differently(num_classes, size):
    """At 96 px a 1×1 shortcut conv at 6×6 sums in another order in NHWC memory on some
    CPUs: the runner keeps such parts in NCHW (checked per shape), the logits stay exact."""
    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.models import ftbnn_resnet
    from ftbnn_exp.nn import NonLinearitySchedule

    torch.manual_seed(0)
    model = ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, num_classes=num_classes,
                         image_size=224).eval()
    inference = to_inference(model)
    runner = fast.fused(inference, "ftbnn_resnet")
    for batch in (1, 2):
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            reference = inference(x)
            assert torch.equal(runner(x), reference)  # the first call, layouts compared
            assert torch.equal(runner(x), reference)  # the chosen layouts


@pytest.mark.parametrize(("depth", "groups", "width", "size"), [
    (18, 1, 32, 64), (34, 5, 40, 64), (18, 3, 24, 32), (18, 8, 32, 64)])
def test_fast_derived_model_equals_the_export_on_every_path(depth, groups, width, size):
    """Table 4's models fused whole: the bridge, group convs (G = 1, 3, 5, 8), copy-and-paste
    reductions, ImageNet and small-input stems."""
    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.models.derived import derived_ftbnn
    from ftbnn_exp.nn import NonLinearitySchedule

    generator = torch.Generator().manual_seed(depth * groups)
    model = derived_ftbnn(NonLinearitySchedule("relu", "fprelu"), width, depth, groups,
                          num_classes=10, image_size=size)
    for module in model.modules():  # BN statistics away from the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.3, generator=generator)
    inference = to_inference(model.eval())
    runner, how = fast.fastest(inference, "derived_ftbnn")
    assert isinstance(runner, fast.FusedNetwork) and how == "fused blocks (derived_ftbnn's runner)"
    x = torch.randn(2, 3, size, size, generator=generator)
    with torch.no_grad():
        reference = inference(x)
        for path in PATHS:
            fused = fast.fused(inference, "derived_ftbnn", fast.PATHS.index(path))
            assert torch.equal(fused(x), reference), path
            assert torch.equal(fused(x), reference), path


def test_breakdown_names_every_part_of_the_fused_and_the_layer_runners(generator):
    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.deploy.profile import breakdown, part_of
    from ftbnn_exp.models import ftbnn_resnet
    from ftbnn_exp.nn import NonLinearitySchedule

    model = ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, num_classes=10,
                         image_size=96).eval()
    x = torch.randn(1, 3, 96, 96, generator=generator)
    fused = breakdown(fast.fused(to_inference(model), "ftbnn_resnet"), x, repeats=2)
    assert {"stem", "binary convs", "shortcuts", "pooling + fc"} <= set(fused)
    layers = breakdown(fast.accelerate(to_inference(model)), x, repeats=2)
    assert {"binary convs", "packing", "real convs", "output steps", "pooling", "fc"} <= set(
        layers)
    assert all(ms > 0 for ms in (*fused.values(), *layers.values()))
    assert [part_of(n) for n in ("aten::conv2d", "aten::batch_norm", "aten::max_pool2d",
                                 "aten::linear", "ftbnn::bconv", "aten::cat")] == [
        "real convs", "output steps", "pooling", "fc", "binary convs", "other"]


def test_the_breakdown_states_the_total_its_parts_add_up_to(generator):
    """Profiled runs take longer than the unprofiled median beside them, so the parts are
    given as shares of the profiled total, which is stated; at 2 threads they still add up to
    no more than the profiled runs' wall time (issue 25)."""
    import re
    import time

    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.deploy.profile import breakdown, describe
    from ftbnn_exp.models import ftbnn_resnet
    from ftbnn_exp.nn import NonLinearitySchedule

    model = ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, num_classes=10,
                         image_size=96).eval()
    runner = fast.accelerate(to_inference(model))
    x = torch.randn(1, 3, 96, 96, generator=generator)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        start = time.perf_counter()
        parts = breakdown(runner, x, repeats=3)
        wall_ms = 1e3 * (time.perf_counter() - start) / 3  # includes the warm-up run
    finally:
        torch.set_num_threads(before)
    assert 0 < sum(parts.values()) <= wall_ms
    text = describe(parts)
    assert text.startswith(f"profiled {sum(parts.values()):.2f} ms/run: ")
    shown = [float(ms) for ms in re.findall(r" ([0-9.]+) ms \(", text)]
    assert sum(shown) == pytest.approx(sum(parts.values()), abs=0.01 * len(shown))


def test_spread_and_a_busy_process_that_stops():
    from ftbnn_exp.deploy.timing import Spread, busy_process, spread_ms

    calls = []
    spread = spread_ms(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and isinstance(spread, Spread)
    assert 0 <= spread.low <= spread.median <= spread.high
    assert str(Spread(1.0, 2.0, 3.0)) == "2.000 ms (min 1.000, max 3.000)"
    import multiprocessing

    with busy_process(limit_s=30):
        assert len(multiprocessing.active_children()) == 1
    assert multiprocessing.active_children() == []


def test_thread_counts_take_turns_round_by_round_each_on_its_own_count():
    from ftbnn_exp.deploy.timing import thread_rounds

    seen: list[tuple[str, int]] = []
    before = torch.get_num_threads()
    calls = {1: lambda: seen.append(("a", torch.get_num_threads())),
             2: lambda: seen.append(("b", torch.get_num_threads()))}
    times = thread_rounds(calls, repeats=3, warmup=2)
    assert seen == [("a", 1)] * 2 + [("b", 2)] * 2 + [("a", 1), ("b", 2)] * 3
    assert {t: len(ms) for t, ms in times.items()} == {1: 3, 2: 3}
    assert all(m >= 0 for ms in times.values() for m in ms)
    assert torch.get_num_threads() == before


def _stem(kernel: int, channels: int, bias: bool, generator) -> nn.Sequential:
    """An ImageNet stem (conv → BN → max-pool) with BN scales of every sign, zero included."""
    layers = nn.Sequential(nn.Conv2d(3, channels, kernel, 2, kernel // 2, bias=bias),
                           nn.BatchNorm2d(channels), nn.MaxPool2d(3, 2, 1)).eval()
    bn = layers[1]
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5, generator=generator)
        bn.running_var.uniform_(0.5, 2, generator=generator)
        bn.weight.normal_(0, 1, generator=generator)
        bn.weight[:2] = 0.0
        bn.bias.normal_(0, 0.3, generator=generator)
    assert (bn.weight < 0).any() and (bn.weight > 0).any()
    return layers


@pytest.mark.parametrize(("kernel", "channels", "bias"), [(7, 64, False), (3, 32, False),
                                                          (3, 32, True)])
def test_the_stem_pooled_before_its_bn_gives_the_reference_bits(kernel, channels, bias,
                                                                 generator):
    """Fig. 4a/4b's stems pooled first: every channel, negative and zero BN scales included,
    equals conv → BN → max-pool in the same memory bit for bit; the runner keeps the fastest
    way that gives the reference's NCHW bits, and its output is the reference's."""
    layers = _stem(kernel, channels, bias, generator)
    pooled = fast.pooled_first(layers)
    stem = fast.stem(layers)
    for size in (64, 75):
        x = torch.randn(2, 3, size, size, generator=generator)
        nhwc = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            by_layer = layers[2](layers[1](layers[0](nhwc)))
            assert torch.equal(pooled(nhwc), by_layer)
            reference = layers(x)
            assert torch.equal(stem(x, 1), reference) and torch.equal(stem(x, 1), reference)
            kept = stem.ways[(tuple(x.shape), 1)]  # the fastest exact way
            assert kept in ("faster nhwc", "nhwc", "nchw")
            assert torch.equal(stem.way(kept, x, 1), reference)
    relu = nn.Sequential(layers[0], layers[1], nn.ReLU(), layers[2])
    assert fast.pooled_first(relu) is None  # another stem: run layer by layer


def _reference_planes(x: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sign and nonzero planes [N, H, W, G, Wg] by plain torch: bit c % 64 of word c // 64."""
    n, c, h, w = x.shape
    per_group = c // groups
    words = -(-per_group // 64)
    y = x.permute(0, 2, 3, 1).reshape(n, h, w, groups, per_group)
    y = F.pad(y, (0, words * 64 - per_group)).reshape(n, h, w, groups, words, 64)
    weights = torch.ones(64, dtype=torch.long) << torch.arange(64)  # bit 63: -2**63, no carry
    return ((y > 0).long() * weights).sum(-1), ((y != 0).long() * weights).sum(-1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("channels", "groups"), [(64, 1), (130, 2), (36, 1), (180, 5), (7, 1)])
def test_each_path_packs_signs_zeros_and_nan_as_the_reference(path, channels, groups, generator):
    x = torch.randn(2, channels, 3, 5, generator=generator)
    x[x.abs() < 0.3] = 0.0
    x[0, :, 0, 0] = -0.0
    x[1, 0, 1, 1], x[1, -1, 2, 4], x[0, 1, 2, 3] = float("nan"), float("inf"), -float("inf")
    signs, nonzero, counts = fast.kernels().pack_nhwc(x, groups, 1, fast.PATHS.index(path))
    want_signs, want_nonzero = _reference_planes(x, groups)
    assert torch.equal(signs, want_signs) and torch.equal(nonzero, want_nonzero)
    assert counts.tolist() == [int((x < 0).sum()), int((x == 0).sum())]


@pytest.mark.parametrize(("cin", "groups", "taps"), [
    (180, 5, True), (360, 5, True), (720, 5, True), (1440, 5, False), (130, 1, True),
    (64, 1, False), (128, 2, False), (512, 1, False)])
def test_convs_whose_groups_leave_words_part_empty_run_tap_packed(cin, groups, taps, generator):
    """Table 4's groups of 36-288 channels (and any C/g off a multiple of 64) run tap-packed
    on every path but AVX-512BW's window code; groups that fill their words do not."""
    per_group = cin // groups
    assert [fast.uses_taps(per_group, 3, i) for i in range(4)] == [taps, taps, False, taps]
    _, packed = _conv(cin, cin, 1, groups, generator)
    for path in PATHS:
        kernel = fast.FastBinaryConv(packed, fast.PATHS.index(path))
        assert (kernel.taps[0].numel() > 0) is (taps and path != "avx512bw")
    _, with_zero = _conv(130, 130, 1, 1, generator, zero=True)
    assert fast.FastBinaryConv(with_zero, 0).taps[0].numel() == 0  # kind 2 weights: padded


@pytest.mark.parametrize(("out_channels", "cin", "groups"), [(10, 6, 2), (180, 36, 5), (16, 72, 1)])
def test_tap_weights_hold_each_channels_window_in_order_and_its_ones(out_channels, cin, groups,
                                                                     generator):
    weight = torch.randn(out_channels, cin, 3, 3, generator=generator)
    words, ones = fast.tap_weights(weight, groups)
    per_group, blocks = out_channels // groups, -(-out_channels // groups // 8)
    assert words.shape == (groups, blocks, -(-9 * cin // 64), 8)
    signs = (weight > 0).view(groups, per_group, cin, 9).permute(0, 1, 3, 2)  # [G, Og, kk, C]
    got = unpack(words.permute(0, 1, 3, 2).reshape(groups, blocks * 8, -1), 9 * cin)
    assert torch.equal(got[:, :per_group], signs.reshape(groups, per_group, 9 * cin))
    assert not got[:, per_group:].any()  # the block's missing channels are all-zero
    assert torch.equal(ones.permute(0, 1, 3, 2).reshape(groups, blocks * 8, 9)[:, :per_group],
                       signs.sum(-1))
