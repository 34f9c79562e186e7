"""The one clock of every timing (the benchmarks, ``deploy bench``, the exchange rate): seconds
per call of a callable, over calls back to back, and rounds of them after a warm-up. Spreads,
medians and ratios are built on these by their callers."""

from __future__ import annotations

import time
from collections.abc import Callable


def seconds_per_call(run: Callable[[], object], calls: int = 1) -> float:
    """Seconds per call of ``run``, over ``calls`` calls back to back."""
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls


def timed_rounds(run: Callable[[], object], repeats: int, warmup: int = 0, calls: int = 1
                 ) -> list[float]:
    """Seconds per call of ``run`` in each of ``repeats`` rounds of ``calls`` calls, after
    ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    return [seconds_per_call(run, calls) for _ in range(repeats)]
