"""Latency samples, their order statistics and bounded timing loops."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Order statistics of one set of latency samples, in seconds."""

    count: int
    median: float
    p90: float
    p99: float
    mean: float
    minimum: float

    @property
    def empty(self) -> bool:
        return self.count == 0


EMPTY = Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)


def summarize(samples: Sequence[float]) -> Summary:
    """Median, p90, p99 (linear interpolation), mean and minimum of `samples`."""
    if not samples:
        return EMPTY
    values = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50.0, 90.0, 99.0])
    return Summary(
        count=int(values.size),
        median=float(p50),
        p90=float(p90),
        p99=float(p99),
        mean=float(values.mean()),
        minimum=float(values.min()),
    )


def time_calls(
    call: Callable[[int], object], count: int, max_seconds: float, warmup: int = 0
) -> list[float]:
    """Per-call wall times (s) of call(0), call(1), ...: `warmup` untimed calls first, then
    at most `count` timed calls and no new call after `max_seconds`."""
    for index in range(warmup):
        call(-1 - index)
    samples: list[float] = []
    clock = time.perf_counter
    stop = clock() + max_seconds
    for index in range(count):
        start = clock()
        call(index)
        end = clock()
        samples.append(end - start)
        if end > stop:
            break
    return samples


def jitter(index: int, spread: float = 1e-3) -> float:
    """A deterministic factor in [1 - spread, 1 + spread) that differs from call to call, so no
    answer can be served from a cache keyed by the request's values."""
    return 1.0 + spread * (2.0 * ((index * 0.6180339887498949) % 1.0) - 1.0)
