"""Real-valued layers in row bands on the kernels' pool (issue 37): a band computes the whole
call's rows from the same inputs, the pool runs the bands single-threaded and bit for bit as
one thread does one after another, and the fused runner uses bands only where they give the
reference engine's bits."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.bands import Reach, RowBands

needs_kernels = pytest.mark.skipif(fast.kernels() is None, reason="no C++ toolchain here")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's thread count set to ``threads`` inside the block, the caller's given back."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(before)


def _stem() -> nn.Sequential:
    """FTBNN-18's stem: 7×7/2 conv → BN → 3×3/2 max-pool (Fig. 4a)."""
    return nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
                         nn.BatchNorm2d(64), nn.MaxPool2d(3, stride=2, padding=1))


def _shortcut() -> nn.Sequential:
    """The baseline's reduction shortcut: 2×2 avg-pool (ceil_mode) → 1×1 conv → BN."""
    return nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
                         nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))


def _randomised(layers: nn.Sequential, seed: int) -> nn.Sequential:
    generator = torch.Generator().manual_seed(seed)
    for module in layers.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2, generator=generator)
    return layers.eval()


CASES = [(_stem, 3, 64), (_stem, 3, 37), (_stem, 3, 30), (_shortcut, 8, 28), (_shortcut, 8, 7),
         (_shortcut, 8, 13)]
"""(layers, input channels, side): even and odd sides, where padding and ceil_mode reach the
last band."""


@pytest.mark.parametrize(("make", "channels", "side"), CASES)
@pytest.mark.parametrize("bands", [2, 3, 5])
def test_bands_compute_the_whole_calls_rows(make, channels, side, bands):
    """Bands put together are the whole output: same shape, every row from the same inputs
    (within a float rounding: an operator may sum fewer rows in another order; a band that
    reads one row too many or too few is off by far more)."""
    layers = _randomised(make(), side)
    x = torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(side))
    x = x.contiguous(memory_format=torch.channels_last)
    split = RowBands.of(layers)
    with torch.no_grad():
        whole = layers(x)
        banded = split.banded(x, bands)
    assert banded.shape == whole.shape
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-5)
    edges = split.split(side, bands)
    assert edges[0][0] == 0 and edges[-1][1] == whole.shape[2]
    assert all(a < b for a, b in edges)
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(edges))


def test_reach_reads_the_rows_an_output_row_reads():
    """A 7×7/2 conv padded by 3: output rows [10, 20) read input rows [17, 42); the first
    band starts at the image's top (its padding is the image's), the band's first row on a
    stride (its rows fall on the whole call's)."""
    conv = Reach(7, 2, 3)
    assert conv.needs(10, 20, 224) == (16, 42)
    assert conv.needs(0, 5, 224) == (0, 12)
    assert conv.needs(100, 112, 224) == (196, 224)
    assert [conv.out_rows(n) for n in (224, 37)] == [112, 19]
    assert Reach(2, 2, 0, ceil_mode=True).out_rows(7) == 4
    assert Reach(3, 2, 1).out_rows(112) == 56


def test_only_layers_of_known_reach_are_split():
    assert RowBands.of(nn.Sequential(nn.Conv2d(3, 3, 3, dilation=2))) is None
    assert RowBands.of(nn.Sequential(nn.Conv2d(3, 3, 3, padding="same"))) is None
    assert RowBands.of(nn.Sequential(nn.Upsample(scale_factor=2))) is None
    assert RowBands.of(_stem()) is not None


@needs_kernels
def test_run_tasks_runs_each_task_once_on_the_pool_with_aten_single_threaded():
    ops = fast.kernels()
    with torch_threads(2):
        seen: list[tuple[int, int]] = []
        where: set[int] = set()
        lock = threading.Lock()

        def task(i: int) -> None:
            with lock:
                seen.append((i, torch.get_num_threads()))
                where.add(threading.get_native_id())
            time.sleep(0.02)  # lets the GIL go: the other thread takes the next task

        ops.run_tasks(task, 6, 2)
        assert sorted(seen) == [(i, 1) for i in range(6)]
        assert len(where) == 2  # the caller and the pool's worker
        assert torch.get_num_threads() == 2  # the caller's own count, given back
        with fast.aten_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2

        def fails(i: int) -> None:
            raise ValueError(i)

        with pytest.raises(RuntimeError, match="a task raised"):
            ops.run_tasks(fails, 2, 2)


def _answers_the_reference_and_bands_as_one_thread(part: fast.ExactPart, layers: nn.Module,
                                                    x: torch.Tensor, threads: int,
                                                    faster: bool = False) -> torch.Tensor:
    """``part`` answers the reference (``layers`` whole in NCHW) on its first call, when it
    compares its ways, and after; it splits into ``threads`` bands (its ``faster`` form's),
    and those run on the pool give the bits of the same bands one after another on one
    thread. The reference."""
    with torch.no_grad():
        reference = layers(x)
        assert torch.equal(part(x, threads), reference)  # first call: ways compared
        assert torch.equal(part(x, threads), reference)  # the kept way
        assert part.band_count(x, threads, faster=faster) == threads
        bands = part.faster_bands if faster else part.bands
        with fast.aten_threads(1):
            one_thread = bands.banded(x.contiguous(memory_format=torch.channels_last), threads)
        way = "faster bands" if faster else "bands"
        assert torch.equal(part.way(way, x, threads), one_thread)
    return reference


@needs_kernels
@pytest.mark.parametrize("threads", [1, 2])
def test_the_pool_runs_bands_bit_for_bit_as_one_thread_does(threads):
    """The bands run on the pool in parallel give the bits of the same bands one after
    another on one thread; the part keeps bands where they equal the reference engine (the
    whole in NCHW at the same thread count), and its answer equals that reference."""
    layers = _randomised(_stem(), 5)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    part = fast.ExactPart(layers)
    with torch_threads(threads):
        _answers_the_reference_and_bands_as_one_thread(part, layers, x, threads)
    way = part.ways[((1, 3, 224, 224), threads)]
    assert way != "bands" if threads == 1 else way in ("bands", "nhwc", "nchw", "nhwc@threads")


@needs_kernels
@pytest.mark.parametrize("threads", [1, 2])
def test_the_stem_pooled_first_runs_in_bands_and_is_tried(threads):
    """FTBNN-18's stem pooled before its BN (:func:`fast.pooled_first`, BN scales of both
    signs) splits into as many bands as the plain stem at 2 threads (1.2M values written, not
    1.8M), run on the pool bit for bit as one thread runs them; the part tries the pooled form
    and the plain one of each kind, keeps one that gives the reference's bits (the fastest:
    the next test), and answers those bits."""
    layers = _randomised(_stem(), 7)
    with torch.no_grad():
        layers[1].weight.normal_(0, 1, generator=torch.Generator().manual_seed(7))
    assert (layers[1].weight < 0).any() and (layers[1].weight > 0).any()
    part = fast.stem(layers)
    assert isinstance(part.faster, fast.PooledFirstStem) and part.faster_bands is not None
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(8))
    with torch_threads(threads):
        reference = _answers_the_reference_and_bands_as_one_thread(part, layers, x, threads,
                                                                   faster=True)
        assert part.band_count(x, threads) == threads
        with torch.no_grad():
            ways = (["faster bands", "bands"] if threads > 1 else []) + [
                "faster nhwc", "nhwc", "nchw"]
            exact = [w for w in ways if torch.equal(part.way(w, x, threads), reference)]
    assert part.ways[((1, 3, 224, 224), threads)] in (exact or ["nhwc@threads", "nchw@threads"])


@needs_kernels
@pytest.mark.parametrize("favoured", ["faster bands", "bands", "faster nhwc", "nhwc", "nchw"])
def test_a_part_keeps_the_fastest_of_its_exact_ways(favoured, monkeypatch):
    """Each exact way on the pool is timed on the first call and the fastest kept, whichever
    it is; the OpenMP ways are not timed (they stay fallbacks, however fast)."""
    layers = _randomised(_stem(), 7)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(8))
    timed: list[str] = []

    def seconds(self, name, y, threads):
        timed.append(name)
        return {favoured: 1.0, "nhwc@threads": 0.1, "nchw@threads": 0.1}.get(name, 2.0)

    monkeypatch.setattr(fast.ExactPart, "seconds", seconds)
    part = fast.stem(layers)
    with torch_threads(2), torch.no_grad():
        reference = layers(x)
        assert torch.equal(part(x, 2), reference)  # first call: ways compared and timed
        exact = [w for w in ["faster bands", "bands", "faster nhwc", "nhwc", "nchw"]
                 if torch.equal(part.way(w, x, 2), reference)]
    assert exact and timed == exact
    assert part.ways[((1, 3, 224, 224), 2)] == (favoured if favoured in exact else exact[0])


@needs_kernels
def test_a_part_keeps_bands_only_where_they_give_the_reference_bits(monkeypatch):
    """Bands one rounding away from the whole are refused: the part runs whole instead."""
    layers = _randomised(_stem(), 6)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    run = RowBands.run
    monkeypatch.setattr(RowBands, "run", lambda self, y, a, b: run(self, y, a, b) * (1 + 1e-6))
    part = fast.ExactPart(layers)
    monkeypatch.setattr(fast.ExactPart, "seconds", lambda self, name, y, threads: (
        0.0 if name == "bands" else 1.0))  # the wrong bands would be the fastest
    with torch.no_grad():
        reference = layers(x)
        assert torch.equal(part(x, 2), reference)
        assert part.ways[((1, 3, 224, 224), 2)] != "bands"
        assert torch.equal(part(x, 2), reference)


@needs_kernels
def test_few_values_run_whole():
    """A part below MIN_BAND_VALUES per band (a 1×1 shortcut at 28², a 32-channel stem) is
    not split; FTBNN-18's stem is."""
    part = fast.ExactPart(_randomised(_shortcut(), 1))
    assert part.band_count(torch.zeros(1, 8, 28, 28), 2) == 1
    small = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(32), nn.MaxPool2d(3, stride=2, padding=1))
    assert fast.ExactPart(small).band_count(torch.zeros(1, 3, 224, 224), 2) == 1
    assert fast.ExactPart(_randomised(_stem(), 1)).band_count(torch.zeros(1, 3, 224, 224),
                                                                 2) == 2


@needs_kernels
def test_a_part_runs_single_threaded_once_its_way_is_known():
    """The reference runs on the caller's thread count; the kept whole way on one thread
    (no OpenMP team woken for a small layer)."""
    counts: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        counts.append(torch.get_num_threads())
        return x * 2

    part = fast.ExactPart(run)
    with torch_threads(2):
        part(torch.ones(1, 4, 3, 3), 2)
        assert counts[0] == 2 and part.ways[((1, 4, 3, 3), 2)] in ("nhwc", "nchw")
        part(torch.ones(1, 4, 3, 3), 2)
        assert counts[-1] == 1


@needs_kernels
@pytest.mark.parametrize(("channels", "groups"), [(64, 1), (254, 1), (180, 5)])
def test_packing_on_the_pool_gives_the_bits_and_counts_of_one_thread(channels, groups):
    """The doubled inputs of the derived models are packed on the pool: 1 and 2 threads give
    the same planes and the same (negatives, zeros) counts, those of the values."""
    generator = torch.Generator().manual_seed(channels)
    x = torch.randn(1, channels, 29, 31, generator=generator)
    x[0, :, :3] = 0.0
    x = x.contiguous(memory_format=torch.channels_last)
    ops = fast.kernels()
    path = fast.best_path()
    one, two = ops.pack_nhwc(x, groups, 1, path), ops.pack_nhwc(x, groups, 2, path)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    assert one[2].tolist() == [int((x < 0).sum()), int((x == 0).sum())]
    words = -(-channels // groups // 64)
    assert one[0].shape == (1, 29, 31, groups, words)
