"""The fp32 side of the ceiling bench (issue 37, item 2): the FMA loop does the multiply-adds it
reports, every real-valued layer of a fused network is found with the multiply-adds the
complexity counter gives it, and its fraction of the ceiling is that count over its time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import real_layers
from benchmarks.ceiling import recorded_layers
from benchmarks.common import baseline, trained_like
from ftbnn_exp.complexity import count_complexity
from ftbnn_exp.deploy import fast, rate
from ftbnn_exp.models.derived import derived_ftbnn
from ftbnn_exp.nn import NonLinearitySchedule

needs_kernels = pytest.mark.skipif(fast.kernels() is None, reason="no C++ toolchain here")
SIZE = 96  # above SMALL_INPUT_MAX: the ImageNet stem, 7×7/2 conv and max-pool


def fma_steps(start: float, steps: int) -> np.float32:
    """``steps`` of acc = fma(acc, 0.999f, 0.001f), one rounding each: in float64 the product
    of two floats is exact and, at these magnitudes, so is the sum; float32 rounds once."""
    acc, a, b = np.float32(start), np.float64(np.float32(0.999)), np.float64(np.float32(0.001))
    for _ in range(steps):
        acc = np.float32(np.float64(acc) * a + b)
    return acc


@needs_kernels
@pytest.mark.slow  # builds the ceiling loops (~1 min on a fresh machine; seconds once built)
@pytest.mark.parametrize("passes", [1, 3])
def test_the_fma_loops_do_the_multiply_adds_they_report(passes):
    module = rate.ceiling_kernels()
    assert module is not None and rate.fma_paths()  # every x86-64 CPU since 2013 has AVX2+FMA
    for path in rate.fma_paths():
        accumulators, steps, lanes = module.fma_loop_shape(rate.FMA_PATHS.index(path))
        assert (steps, lanes) == (16, {"avx2_fma": 8, "avx512f": 16}[path])
        macs, seconds, values = module.fma_ceiling(rate.FMA_PATHS.index(path), passes)
        assert macs == passes * accumulators * steps * lanes and seconds > 0
        # every lane of every accumulator took exactly passes × steps multiply-adds
        assert values.shape == (accumulators, lanes)
        expected = [fma_steps(2 + i, passes * steps) for i in range(accumulators)]
        assert values.numpy().tolist() == [[float(v)] * lanes for v in expected]
    assert rate.best_fma_path() == rate.fma_paths()[-1]


def _derived() -> nn.Module:
    torch.manual_seed(0)
    return trained_like(derived_ftbnn(NonLinearitySchedule("relu", "fprelu"), 40, 34, 5,
                                      num_classes=10, image_size=SIZE)).eval()


def _counted_macs(model: nn.Module) -> dict[str, int]:
    """The complexity counter's multiply-adds of every real conv and linear layer, by name."""
    rows = count_complexity(model, (3, SIZE, SIZE), "macs").layers
    return {row.name: row.macs for row in rows if row.kind == "real" and row.macs}


@needs_kernels
@pytest.mark.parametrize(("model", "shortcuts", "conv_shortcuts", "stem_conv"), [
    (lambda: trained_like(baseline(SIZE, num_classes=10)).eval(), 3, True, (64, 7)),
    (_derived, 3, False, (32, 3))])
def test_every_real_layer_is_found_with_the_counters_multiply_adds(model, shortcuts,
                                                                   conv_shortcuts, stem_conv):
    model = model()
    _, rows = recorded_layers(model, SIZE)
    (bf16,) = [row for row in rows if not row.exact]  # the opt-in stem, timed beside
    assert bf16.part == "stem" and bf16.layer.startswith("(bf16 autocast") and not bf16.in_goal
    rows = [row for row in rows if row.exact]
    parts = [row.part for row in rows if not row.layer]
    assert parts[0] == "stem" and parts[-1] == "head"
    assert len(parts) == 2 + shortcuts and all(p.endswith(" shortcut") for p in parts[1:-1])
    stem = [row.layer.split()[1] for row in rows if row.part == "stem" and row.layer]
    # as the runner's fastest exact way calls them: pooled first, or in the model's order
    assert stem in (["Conv2d", "MaxPool2d", "BatchNorm2d"], ["Conv2d", "BatchNorm2d", "MaxPool2d"])
    counted = _counted_macs(model)
    timed = {row.layer.split()[0]: row.macs for row in rows
             if row.layer and row.macs and row.part != "stem"}
    (stem_conv_macs,) = [row.macs for row in rows if row.part == "stem" and row.layer
                         and row.macs]
    # every real conv and the FC, each with the counter's count
    assert {**timed, "stem.0": stem_conv_macs} == counted
    for part in parts:  # a part's own call does its layers' multiply-adds, no more
        whole, *layers = [row for row in rows if row.part == part]
        assert whole.macs == sum(row.macs for row in layers)
    # the goal's parts: the stem and the shortcuts with multiply-adds (a 1×1 conv, not a pool)
    assert ([row.in_goal for row in rows if not row.layer]
            == [True] + [conv_shortcuts] * shortcuts + [False])
    # the stem's k×k/2 conv: its outputs at (SIZE/2)², 3·k·k multiply-adds each
    channels, k = stem_conv
    assert rows[1].macs == (SIZE // 2) ** 2 * channels * 3 * k * k
    assert rows[1].shape.startswith(f"3×{SIZE}×{SIZE} → {channels}×{SIZE // 2}×{SIZE // 2} N")


def test_a_rows_fraction_is_its_multiply_adds_per_second_over_the_ceiling_beside_it():
    row = real_layers.RealLayer("stem", "", lambda: None, 120, "")
    row.samples = {"ceiling": [100.0, 40.0, 80.0], "seconds": [2.0, 3.0, 4.0]}
    assert real_layers.fractions(row) == [0.6, 1.0, 0.375]
    assert real_layers.best(row) == 0.6  # 120 MACs in 2 s over the best ceiling, 100
    assert real_layers.row_line(row).endswith("met")
    row.samples["seconds"][0] = 3.0
    assert real_layers.best(row) == 0.4 and real_layers.row_line(row).endswith(
        "20 points short")
    pool = real_layers.RealLayer("stem", "stem.2 MaxPool2d", lambda: None, 0, "")
    pool.samples = row.samples
    assert not pool.in_goal and "(no multiply-adds)" in real_layers.row_line(pool)


def test_a_path_check_reports_bits_top1_and_the_largest_logit_difference():
    reference = torch.tensor([[1.0, 2.0], [3.0, 1.0]])
    check = fast.PathCheck.of(torch.tensor([[1.0, 2.5], [0.5, 1.0]]), reference)
    assert check == fast.PathCheck(False, 0.5, 2.5)
    assert fast.PathCheck.of(reference.clone(), reference) == fast.PathCheck(True, 1.0, 0.0)


@needs_kernels
def test_the_bf16_stem_is_checked_against_the_exact_path_with_its_logit_difference():
    """``deploy verify --stem bf16``'s numbers: the exact stem gives the reference's logits,
    the bf16 one moves them (never bit-exact by promise), and each path says by how much."""
    from ftbnn_exp.deploy.layers import to_inference

    torch.manual_seed(0)
    inference = to_inference(trained_like(baseline(SIZE, num_classes=10)).eval())
    images = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    how, exact = fast.check_paths(inference, images, "ftbnn_resnet")
    assert how == "fused blocks (ftbnn_resnet's runner)"
    assert set(exact) == set(fast.supported_paths())
    assert all(c == fast.PathCheck(True, 1.0, 0.0) for c in exact.values())
    how, loose = fast.check_paths(inference, images, "ftbnn_resnet", "bf16")
    assert how == "fused blocks (ftbnn_resnet's runner, bf16 stem (not bit-exact))"
    with torch.no_grad():
        reference = inference(images)
        runner, _ = fast.fastest(inference, "ftbnn_resnet", stem_precision="bf16")
        moved = (runner(images) - reference).abs().max().item()
    assert moved > 0 and loose[fast.PATHS[fast.best_path()]].max_logit_diff == moved
    assert all(not c.exact and 0 <= c.top1_same <= 1 for c in loose.values())
