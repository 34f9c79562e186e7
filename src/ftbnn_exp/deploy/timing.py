"""Timing an inference runner as a deployed model meets it: the spread over rounds, and a run
beside one busy process (a deployed model shares its machine).

Medians alone hid the erratic all-cores times of issue 26; min / median / max show them, and
the loaded run shows whether all cores stay better than one thread when another process
wants a core.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ftbnn_exp.timing import seconds_per_call, timed_rounds


@dataclass(frozen=True)
class Spread:
    """Milliseconds per run over the timed rounds."""

    low: float
    median: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(min(values), statistics.median(values), max(values))

    def __iter__(self) -> Iterator[float]:
        return iter((self.low, self.median, self.high))

    def __str__(self) -> str:
        return f"{self.median:.3f} ms (min {self.low:.3f}, max {self.high:.3f})"


def spread_ms(run: Callable[[], object], repeats: int, warmup: int = 1) -> Spread:
    """``run``'s time per call over ``repeats`` timed calls after ``warmup`` untimed ones
    (the one clock, :mod:`ftbnn_exp.timing`)."""
    with torch.no_grad():
        return Spread.of([1e3 * s for s in timed_rounds(run, repeats, warmup)])


def thread_rounds(calls: dict[int, Callable[[], object]], repeats: int, warmup: int = 1
                  ) -> dict[int, list[float]]:
    """Milliseconds per call of each ``calls[threads]`` on ``threads`` torch threads, the
    thread counts taking turns round by round: a machine whose speed drifts (a VM's neighbour,
    a clock) then moves every count's round alike, and round ``i``'s times are side by side.
    Timed as :func:`spread_ms`; torch's thread count is set back after."""
    before = torch.get_num_threads()
    times: dict[int, list[float]] = {threads: [] for threads in calls}
    try:
        with torch.no_grad():
            for threads, run in calls.items():
                torch.set_num_threads(threads)
                for _ in range(warmup):
                    run()
            for _ in range(repeats):
                for threads, run in calls.items():
                    torch.set_num_threads(threads)
                    times[threads].append(1e3 * seconds_per_call(run))
    finally:
        torch.set_num_threads(before)
    return times


def _spin(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


@contextlib.contextmanager
def busy_process(limit_s: float = 600.0) -> Iterator[None]:
    """One other process spinning on a core while the block runs (stopped after it, and in
    any case after ``limit_s``: a bench killed midway leaves nothing behind for long)."""
    worker = multiprocessing.get_context("spawn").Process(
        target=_spin, args=(time.monotonic() + limit_s,), daemon=True)
    worker.start()
    try:
        time.sleep(0.2)  # let it reach its loop
        yield
    finally:
        worker.terminate()
        worker.join()
