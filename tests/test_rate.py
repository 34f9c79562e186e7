"""The exchange rate (issue 26, part 3): the rate from given timings is plain arithmetic, the
solver meets a budget at any rate (at 64, the paper's, exactly today's widths), and the CLIs
that measure and use it (``deploy rate``, ``complexity budget_rate=``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ftbnn_exp.app.complexity import main as complexity_main
from ftbnn_exp.complexity import count_complexity, solve_width
from ftbnn_exp.deploy import fast, rate
from ftbnn_exp.deploy.__main__ import main as deploy_main
from ftbnn_exp.deploy.timing import Spread
from ftbnn_exp.models import derived_ftbnn, family
from ftbnn_exp.models.derived import admissible_widths_near
from ftbnn_exp.nn import NonLinearitySchedule

IMAGENET = (3, 224, 224)
L18_G1 = {"depth": 18, "groups": 1}
ROOT = Path(__file__).resolve().parents[1]
needs_kernels = pytest.mark.skipif(fast.kernels() is None, reason="no C++ toolchain here")


def test_rate_from_timings_is_exact_arithmetic():
    # fp32: 0.5 s for 1024 multiply-adds; binary: 0.125 s for 2048 BOPs -> 8 BOPs per FLOP
    assert rate.exchange_rate(0.5, 1024, 0.125, 2048) == 8.0
    assert rate.exchange_rate(0.25, 512, 0.25, 512) == 1.0
    assert tuple(Spread.of([3.0, 1.0, 2.0, 5.0])) == (1.0, 2.5, 5.0)
    assert rate.rate_text(13.17) == "1 BOP = 1/13.2 FLOP"
    assert rate.verdict_line(16.0).startswith(
        "paper: 1 BOP = 1/64 FLOP; here 1 BOP = 1/16 FLOP: a binary multiply-add costs 4.0× "
        "what the paper's budget charges")
    assert "budget_rate=16" in rate.verdict_line(16.0)
    assert "4.0× less" in rate.verdict_line(256.0)


def test_all_kinds_together_weighs_each_kind_by_its_multiply_adds():
    # two kinds at 16 px: 256→256 at 1×1 (2304·256 MACs) and the same with {0,1} input
    dense = rate.LayerKind("a", (256, 256), 16)
    relu = rate.LayerKind("b", (256, 256), 16, inputs="{0,1}")
    assert (dense.macs(16), dense.bops(16), relu.bops(16)) == (589824, 589824, 1179648)
    found = [rate.KindRates(dense, 16, [1.0, 2.0], [0.25, 0.5]),
             rate.KindRates(relu, 16, [3.0, 2.0], [0.5, 0.5])]
    assert found[0].rates == [4.0, 4.0] and found[1].rates == [12.0, 8.0]
    # round 0: fp32 4 s for 2·589824 MACs, binary 0.75 s for 3·589824 BOPs -> 8
    assert rate.overall_rates(found) == [8.0, 6.0]


def test_bad_rate_arguments_name_the_argument():
    for args, named in (((224, 30, 0), "--threads 0"), ((224, 0, 1), "--repeats 0"),
                        ((8, 30, 1), "--image-size 8")):
        with pytest.raises(ValueError, match=rf"^{named}: allowed: a whole number"):
            rate.check_rate_args(*args)


@pytest.fixture(scope="module")
def solved():
    """L18-G1's 135M row solved at the paper's rate and at 13 BOPs per FLOP (one process:
    the traces of the widths both visit are counted once)."""
    derived = family("derived_ftbnn")
    return (solve_width(derived, L18_G1, 135), solve_width(derived, L18_G1, 135, rate=64),
            solve_width(derived, L18_G1, 135, rate=13))


def _budget(width: int, at: float) -> float:
    model = derived_ftbnn(NonLinearitySchedule(), width, 18, 1)
    return count_complexity(model, IMAGENET, "paper").budget_at(at)


def test_solver_at_rate_64_gives_todays_widths_exactly(solved):
    default, at_64, _ = solved
    assert default == at_64
    assert default.width == 127  # Table 4's L18-G1 135M row, as bench-deploy records it
    model = derived_ftbnn(NonLinearitySchedule(), 127, 18, 1)
    assert default.budget == count_complexity(model, IMAGENET, "paper").budget


def test_solver_at_another_rate_gives_the_width_nearest_the_target_at_that_rate(solved):
    _, at_64, at_13 = solved
    assert at_13.target == at_64.target and at_13.rate == 13
    assert at_13.width < at_64.width  # dearer BOPs: a narrower model meets the same budget
    widths = [at_13.width, *admissible_widths_near(at_13.width, 1, count=1)]
    recounted = {w: _budget(w, 13) for w in widths}
    assert recounted[at_13.width] == at_13.budget
    gaps = {w: abs(b - at_13.target) for w, b in recounted.items()}
    assert min(gaps, key=gaps.get) == at_13.width
    assert "budget_rate=13 (FLOPs + BOPs/13)" in at_13.describe()


def test_solver_refuses_a_rate_that_is_not_positive():
    with pytest.raises(ValueError, match=r"^budget_rate=0 must be a positive number"):
        solve_width(family("derived_ftbnn"), L18_G1, 135, rate=0)


def test_complexity_budget_rate_prints_both_budgets(capsys):
    assert complexity_main(["budget_rate=13"]) == 0
    shown = capsys.readouterr().out
    assert complexity_main(["budget_rate=13", "format=json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert counted["budget_rate"] == 13
    assert counted["budget_at_rate"] == counted["flops"] + counted["bops"] / 13
    assert counted["budget"] == counted["flops"] + counted["bops"] / 64
    assert (f"budget at budget_rate=13: {counted['budget_at_rate'] / 1e6:.2f}M (FLOPs + BOPs/13)"
            f" beside the paper's {counted['budget'] / 1e6:.2f}M (FLOPs + BOPs/64)" in shown)
    assert complexity_main([]) == 0 and "budget_rate" not in capsys.readouterr().out
    assert complexity_main(["budget_rate=-1"]) == 2
    assert capsys.readouterr().err == "error: budget_rate=-1 must be positive\n"


@needs_kernels
def test_deploy_rate_prints_one_line_per_layer_kind(capsys):
    assert deploy_main(["rate", "--repeats", "2", "--image-size", "32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for kind in rate.KINDS:
        (line,) = [line for line in lines if line.startswith(f"  {kind.name} ")]
        assert kind.describe(32) in line and "rate min" in line and "1 BOP = 1/" in line
    assert len(lines) == len(rate.KINDS) + 3  # heading, the kinds, all together, verdict
    assert lines[-1].startswith("paper: 1 BOP = 1/64 FLOP; here 1 BOP = 1/")


@pytest.mark.parametrize(("args", "named"), [(["--threads", "0"], "--threads 0"),
                                             (["--repeats", "0"], "--repeats 0")])
def test_deploy_rate_refuses_a_bad_argument_in_one_line(args, named, capsys):
    assert deploy_main(["rate", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {named}: allowed: ") and err.count("\n") == 1


@needs_kernels
@pytest.mark.slow  # builds the ceiling loops (~1 min on a fresh machine)
def test_the_ceiling_loops_count_their_multiply_adds():
    module = rate.ceiling_kernels()
    assert module is not None
    for path in fast.supported_paths():
        macs, seconds = module.ceiling(fast.PATHS.index(path), 3)
        # 64 weight vectors of 8 words, each against 16 pixels' words (4 on popcnt and AVX2,
        # where 16 registers hold no more), 64 multiply-adds a word
        pixels = 4 if path in ("popcnt", "avx2") else 16
        assert macs == 3 * 64 * 8 * pixels * 64 and seconds > 0


@needs_kernels
@pytest.mark.slow
def test_ceiling_benchmark_prints_every_binary_conv_of_both_networks():
    done = subprocess.run([sys.executable, "-m", "benchmarks.ceiling", "--image-size", "64",
                           "--repeats", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert out.startswith("popcount ceiling, 1 thread, XOR + POPCNT + ADD over L1")
    assert "FTBNN-18: 16 binary convs" in out and "derived L34-G5 (w=" in out
    assert ": 33 binary convs" in out
    rows = [line for line in out.splitlines()  # the binary convs (not the real shortcuts)
            if line.startswith("  stages.") and " shortcut " not in line[:36]]
    assert len(rows) == 16 + 32 and all(line.endswith(("met", "points short")) for line in rows)
    assert out.count("all layers, conv") == 2 and "words per pixel" in out
    assert "\nfp32 ceiling, 1 thread, register-resident FMA loop" in out
    assert out.count(": real-valued layers (fp32, PyTorch as the fused runner calls them)") == 2
    names = [line[2:36].strip() for line in out.splitlines() if not line.startswith("   ")]
    parts = [name for name in names if name in ("stem", "head") or name.endswith(" shortcut")]
    assert parts == ["stem", "stages.1.0 shortcut", "stages.2.0 shortcut",
                     "stages.3.0 shortcut", "head"] * 2
    assert out.count("  stem and shortcuts together: ") == 2


@needs_kernels
@pytest.mark.parametrize(("cin", "cout", "groups", "share"), [
    (64, 64, 1, 1.0), (180, 180, 5, 324 / 384 * 36 / 40), (130, 70, 1, 1170 / 1216 * 70 / 72)])
def test_the_ceiling_counts_the_words_each_conv_popcounts(cin, cout, groups, share):
    """``bits``: real channels over popcounted bits, tap-packed where the conv runs so (36
    channels a group: 324 bits in 6 words, not 9) and padded where it does not."""
    from benchmarks.ceiling import bits_used
    from ftbnn_exp.deploy.layers import PackedBinaryConv2d
    from ftbnn_exp.nn import BinaryConv2d

    packed = PackedBinaryConv2d.from_conv(BinaryConv2d(cin, cout, 3, padding=1, groups=groups))
    conv = fast.FastBinaryConv(packed, fast.PATHS.index("popcnt"))
    assert bits_used(conv) == pytest.approx(share)
    padded = fast.FastBinaryConv(packed, fast.PATHS.index("popcnt"))
    padded.taps = (torch.empty(0), torch.empty(0))
    cg, og = cin // groups, cout // groups
    assert bits_used(padded) == pytest.approx(cg / (64 * -(-cg // 64)) * og / (8 * -(-og // 8)))
