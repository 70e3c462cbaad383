"""Prometheus metrics on their own port (PLANNER_METRICS_PORT): calls by method and status,
call latency, solver and fit time, the worker pools' queues, operations and law-cache hits.

Pools, the operation runner and the law cache keep plain counters; a collector reads them at
scrape time, so nothing on the request path depends on prometheus_client but the call counter
and histogram, fed once per call when it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.admission import AdmissionInterceptor
from server.law_cache import LawCache
from server.operations import OperationRunner

# From a closed-form plan (tens of microseconds) to a long fit (minutes).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                   10, 30, 60, 300, 1800)  # fmt: skip


class Pool(Protocol):
    processes: int
    in_flight: int
    calls: int
    seconds: float


class Metrics:
    """One registry per server (tests start several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # this process's memory, CPU and descriptors
        self.calls = Counter(
            "planner_requests",
            "Planner calls that ended, by method and gRPC status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "planner_request_seconds",
            "Time from admission until the call ended (its answer sent), by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        # Each label set's child, found once: `labels()` takes a lock and builds a key per call.
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[method, code] = self.calls.labels(method, code)
        histogram = self._histograms.get(method)
        if histogram is None:
            histogram = self._histograms[method] = self.latency.labels(method)
        counter.inc()
        histogram.observe(seconds)

    def watch(
        self,
        pools: dict[str, Pool],
        operations: OperationRunner,
        laws: LawCache,
        admission: AdmissionInterceptor,
    ) -> None:
        self.registry.register(_ServerCollector(pools, operations, laws, admission))

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, address, registry=self.registry)


class _ServerCollector(Collector):
    def __init__(
        self,
        pools: dict[str, Pool],
        operations: OperationRunner,
        laws: LawCache,
        admission: AdmissionInterceptor,
    ) -> None:
        self.pools = pools
        self.operations = operations
        self.laws = laws
        self.admission = admission

    def collect(self) -> Iterator[Metric]:
        busy = GaugeMetricFamily(
            "planner_pool_busy_workers", "Worker processes computing, by pool.", labels=["pool"]
        )
        waiting = GaugeMetricFamily(
            "planner_pool_queue_depth", "Calls waiting for a worker, by pool.", labels=["pool"]
        )
        calls = CounterMetricFamily(
            "planner_pool_calls", "Calls a pool finished, by pool.", labels=["pool"]
        )
        seconds = CounterMetricFamily(
            "planner_pool_seconds",
            "Seconds calls spent in a pool (waiting and computing): solver and fit time.",
            labels=["pool"],
        )
        for name, pool in self.pools.items():
            busy.add_metric([name], min(pool.in_flight, pool.processes))
            waiting.add_metric([name], max(pool.in_flight - pool.processes, 0))
            calls.add_metric([name], pool.calls)
            seconds.add_metric([name], pool.seconds)
        yield from (busy, waiting, calls, seconds)
        active = GaugeMetricFamily(
            "planner_operations", "This server's operations, by state.", labels=["state"]
        )
        for state, count in self.operations.counts().items():
            active.add_metric([state], count)
        yield active
        ended = CounterMetricFamily(
            "planner_operations_ended",
            "Operations this server ran to an end, by outcome.",
            labels=["outcome"],
        )
        for outcome in ("succeeded", "failed", "stopped"):
            ended.add_metric([outcome], self.operations.ended[outcome])
        yield ended
        cache = CounterMetricFamily(
            "planner_law_cache_lookups", "Law lookups by queries, by result.", labels=["result"]
        )
        cache.add_metric(["hit"], self.laws.hits)
        cache.add_metric(["miss"], self.laws.misses)
        yield cache
        yield GaugeMetricFamily(
            "planner_calls_in_flight",
            "Planner calls admitted and not yet ended (PLANNER_MAX_CONCURRENT_RPCS caps it).",
            value=self.admission.in_flight,
        )
