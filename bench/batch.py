"""Batch queries for cluster schedulers (issue 10, item 8): plans per second of one
PlanComputeOptimalBatch call of 100,000 closed-form budgets, against the same number of single
PlanComputeOptimal calls, and PredictBatch points per second.

Each is timed two ways: the handler coroutine in-process, on a server assembled by
`server.app.start` (store, warm solver pool) without the gRPC transport; and as round trips
through a `planner-server` subprocess on a loopback port (default settings), which adds
serialising, sending and parsing the ~5 MB answer. Band throughput uses a family fitted in the
subprocess with a bootstrap ensemble.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.domain import log
from bench.stats import Summary, summarize, time_calls
from bench.targets import TargetRow, target_table
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as pb_grpc
from tests.service.server_process import ServerProcess

FAMILY = "chinchilla-epoch-2024"
FITTED = "bench-batch-fitted"
E, A, B, ALPHA, BETA = 1.8172, 482.01, 2085.43, 0.3478, 0.3658
TARGET_PLANS_PER_SECOND = 100_000.0
# Answers of 100,000 rows are ~5.4 MB, beyond gRPC's default 4 MB receive limit.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]


@dataclass(frozen=True)
class BatchCounts:
    rows: int  # plans (or points) per batch call
    batch_calls: int  # timed batch calls per measurement
    single_calls: int  # single calls timed for the baseline (as many as rows in full mode)
    max_seconds: float  # per measurement
    bootstrap: int  # ensemble rows of the fitted family

    @staticmethod
    def for_mode(quick: bool) -> BatchCounts:
        if quick:
            return BatchCounts(100_000, 3, 2_000, 3.0, 20)
        return BatchCounts(100_000, 15, 100_000, 60.0, 200)


@dataclass(frozen=True)
class Rate:
    """Calls of `rows` plans (or points) each: per-call times and the rate they give."""

    what: str
    path: str
    rows: int
    seconds: Summary
    # Wall time of the timed calls together (single calls: their rate is calls / total).
    total_seconds: float

    @property
    def per_second(self) -> float:
        """Rows per second: of the median call for batches, of all calls for single calls."""
        if self.rows == 1:
            return self.seconds.count / self.total_seconds if self.total_seconds else 0.0
        return self.rows / self.seconds.median if self.seconds.count else 0.0


@dataclass(frozen=True)
class BatchBench:
    quick: bool
    counts: BatchCounts
    rates: list[Rate]
    ensemble_rows: int
    note: str

    def rate(self, what: str, path: str) -> Rate | None:
        return next((r for r in self.rates if r.what == what and r.path == path), None)


# -- requests ----------------------------------------------------------------------------------


def budgets(rows: int, call: int) -> list[float]:
    """Budgets spread over 1e20..1e24 FLOPs (no caps: closed form), shifted per call so no
    answer could come from a cache."""
    values: list[float] = (np.geomspace(1e20, 1e24, rows) * (1 + 1e-6 * call)).tolist()
    return values


def batch_request(rows: int, call: int) -> pb.PlanComputeOptimalBatchRequest:
    return pb.PlanComputeOptimalBatchRequest(
        law=pb.LawSelector(family=FAMILY), budgets=budgets(rows, call)
    )


def single_request(call: int) -> pb.PlanComputeOptimalRequest:
    request = pb.PlanComputeOptimalRequest(law=pb.LawSelector(family=FAMILY))
    request.budget.flops = 10.0 ** (20.0 + 4.0 * ((call * 0.6180339887498949) % 1.0))
    return request


def predict_request(
    rows: int, call: int, family: str = FAMILY, band: bool = False
) -> pb.PredictBatchRequest:
    params = np.geomspace(1e8, 7e10, rows) * (1 + 1e-6 * call)
    tokens = params * np.linspace(5.0, 200.0, rows)
    return pb.PredictBatchRequest(
        law=pb.LawSelector(family=family),
        params=params.tolist(),
        tokens=tokens.tolist(),
        with_band=band,
    )


def check_plans(reply: pb.PlanComputeOptimalBatchResponse, rows: int) -> None:
    if len(reply.params) != rows or set(reply.solver) != {"closed_form"}:
        raise RuntimeError(
            f"unexpected batch answer: {len(reply.params)} rows, {set(reply.solver)}"
        )


def check_single(reply: pb.PlanComputeOptimalResponse) -> None:
    if reply.solver != "closed_form":
        raise RuntimeError(f"unexpected solver {reply.solver!r}")


# -- timing ------------------------------------------------------------------------------------


async def timed_async(
    call: Callable[[int], Awaitable[None]], count: int, max_seconds: float, warmup: int
) -> tuple[Summary, float]:
    for index in range(warmup):
        await call(-1 - index)
    samples: list[float] = []
    clock = time.perf_counter
    began = clock()
    for index in range(count):
        start = clock()
        await call(index)
        samples.append(clock() - start)
        if clock() - began > max_seconds:
            break
    return summarize(samples), clock() - began


def timed(
    call: Callable[[int], None], count: int, max_seconds: float, warmup: int
) -> tuple[Summary, float]:
    samples = time_calls(call, count, max_seconds, warmup)
    return summarize(samples), sum(samples)


# -- the handler in-process --------------------------------------------------------------------


@asynccontextmanager
async def in_process_servicer(workdir: Path) -> AsyncIterator[Any]:
    """The PlannerService that `server.app.start` registers, however it is constructed."""
    from server.app import start
    from server.config import Settings

    settings = Settings(listen="127.0.0.1:0", database_url=f"sqlite:///{workdir / 'batch.db'}")
    servicers: list[Any] = []
    register = pb_grpc.add_PlannerServiceServicer_to_server

    def capture(servicer: Any, grpc_server: Any) -> None:
        servicers.append(servicer)
        register(servicer, grpc_server)

    setattr(pb_grpc, "add_PlannerServiceServicer_to_server", capture)  # noqa: B010
    try:
        running = await start(settings)
    finally:
        setattr(pb_grpc, "add_PlannerServiceServicer_to_server", register)  # noqa: B010
    try:
        if len(servicers) != 1:
            raise RuntimeError(f"expected one PlannerService registration, saw {len(servicers)}")
        yield servicers[0]
    finally:
        await running.stop(1.0)


async def _handler_rates(workdir: Path, counts: BatchCounts) -> list[Rate]:
    rows = counts.rows
    # Requests are built before the clock starts: only the handler is timed.
    plans = [batch_request(rows, i) for i in range(-2, counts.batch_calls)]
    singles = [single_request(i) for i in range(-100, counts.single_calls)]
    points = [predict_request(rows, i) for i in range(-2, counts.batch_calls)]
    async with in_process_servicer(workdir) as service:

        async def plan_batch(call: int) -> None:
            check_plans(await service.PlanComputeOptimalBatch(plans[call + 2], None), rows)

        async def plan_single(call: int) -> None:
            check_single(await service.PlanComputeOptimal(singles[call + 100], None))

        async def predict(call: int) -> None:
            await service.PredictBatch(points[call + 2], None)

        rates = []
        seconds, total = await timed_async(plan_batch, counts.batch_calls, counts.max_seconds, 2)
        rates.append(Rate("PlanComputeOptimalBatch", "handler", rows, seconds, total))
        seconds, total = await timed_async(
            plan_single, counts.single_calls, counts.max_seconds, 100
        )
        rates.append(Rate("PlanComputeOptimal (single calls)", "handler", 1, seconds, total))
        seconds, total = await timed_async(predict, counts.batch_calls, counts.max_seconds, 2)
        rates.append(Rate("PredictBatch", "handler", rows, seconds, total))
    return rates


# -- round trips -------------------------------------------------------------------------------


def fit_family(stub: pb_grpc.PlannerServiceStub, resamples: int) -> int:
    """A family on Epoch's surface (1% scatter), fitted with a bootstrap; its ensemble size."""
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=FITTED)))
    noise = np.random.default_rng(7).normal(scale=0.01, size=24)
    runs = []
    for i, (n, m) in enumerate((n, m) for n in np.geomspace(5e7, 2e9, 8) for m in (5, 20, 80)):
        d = m * n
        loss = (E + A / n**ALPHA + B / d**BETA) * np.exp(noise[i])
        runs.append(pb.Run(run_id=f"r{i}", params=n, tokens=d, loss=loss))
    stub.AddRuns(pb.AddRunsRequest(family=FITTED, runs=runs))
    request = pb.FitLawRequest(family=FITTED, method="vpnls", bootstrap=resamples)
    events = list(stub.FitLaw(request, timeout=600))
    return int(events[-1].law.ensemble_size)


def _round_trips(target: str, counts: BatchCounts) -> tuple[list[Rate], int]:
    rows = counts.rows
    rates = []
    ensemble = 0
    singles = [single_request(i) for i in range(-100, counts.single_calls)]
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.PlannerServiceStub(channel)
        requests = [batch_request(rows, i) for i in range(-2, counts.batch_calls)]

        def plan_batch(call: int) -> None:
            check_plans(stub.PlanComputeOptimalBatch(requests[call + 2], timeout=60), rows)

        seconds, total = timed(plan_batch, counts.batch_calls, counts.max_seconds, 2)
        rates.append(Rate("PlanComputeOptimalBatch", "round trip", rows, seconds, total))

        def plan_single(call: int) -> None:
            check_single(stub.PlanComputeOptimal(singles[call + 100], timeout=10))

        seconds, total = timed(plan_single, counts.single_calls, counts.max_seconds, 100)
        rates.append(Rate("PlanComputeOptimal (single calls)", "round trip", 1, seconds, total))
        for what, family, band in (
            ("PredictBatch", FAMILY, False),
            ("PredictBatch, with_band", FITTED, True),
        ):
            if band:
                ensemble = fit_family(stub, counts.bootstrap)
            points = [predict_request(rows, i, family, band) for i in range(-2, counts.batch_calls)]

            def predict(call: int, points: list[pb.PredictBatchRequest] = points) -> None:
                stub.PredictBatch(points[call + 2], timeout=60)

            seconds, total = timed(predict, counts.batch_calls, counts.max_seconds, 2)
            rates.append(Rate(what, "round trip", rows, seconds, total))
    return rates, ensemble


def run(quick: bool) -> BatchBench:
    counts = BatchCounts.for_mode(quick)
    notes = []
    rates: list[Rate] = []
    ensemble = 0
    with tempfile.TemporaryDirectory(prefix="planner-bench-batch-") as scratch:
        workdir = Path(scratch)
        log(f"batch queries: handler in-process, {counts.rows:,} rows per call")
        try:
            rates += asyncio.run(_handler_rates(workdir, counts))
        except Exception as error:  # the server's internals may move; the rest still runs
            notes.append(f"handler not measured: {type(error).__name__}: {error}")
            log(notes[-1])
        log("batch queries: round trips through planner-server")
        try:
            with ServerProcess(workdir / "trips.db", solver_processes=None) as server:
                trips, ensemble = _round_trips(server.target, counts)
                rates += trips
        except (RuntimeError, grpc.RpcError) as error:
            notes.append(f"round trips not measured: {type(error).__name__}: {error}")
            log(notes[-1])
    for rate in rates:
        log(f"  {rate.what}, {rate.path}: {rate.per_second:,.0f} rows/s")
    return BatchBench(quick, counts, rates, ensemble, "; ".join(notes))


# -- report ------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds != seconds:  # NaN: nothing measured
        return "n/a"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1.0 else f"{seconds:.3g} s"


def targets(bench: BatchBench) -> list[TargetRow]:
    handler = bench.rate("PlanComputeOptimalBatch", "handler")
    trip = bench.rate("PlanComputeOptimalBatch", "round trip")
    single = bench.rate("PlanComputeOptimal (single calls)", "handler")
    if handler is None:
        measured, met = "not measured", None
    else:
        measured = f"{handler.per_second:,.0f} plans/s in-process (handler)"
        if trip is not None:
            measured += f", {trip.per_second:,.0f} plans/s round trip"
        if single is not None and single.per_second:
            measured += f"; {handler.per_second / single.per_second:,.0f}x single calls' rate"
        met = None if bench.quick else handler.per_second >= TARGET_PLANS_PER_SECOND
    what = (
        f"`PlanComputeOptimalBatch`, one call of {bench.counts.rows:,} closed-form budgets, "
        "server-side"
    )
    return [TargetRow(what, f">= {TARGET_PLANS_PER_SECOND:,.0f} plans/s", measured, met)]


def section(bench: BatchBench) -> list[str]:
    out = ["## Batch queries: PlanComputeOptimalBatch, PredictBatch", ""]
    out += target_table(targets(bench))
    out.append("")
    out.append(
        "Rows per second: of the median call for batch calls; for single calls, calls / the "
        "wall time of all of them, back to back. *Handler*: the coroutine awaited in-process on "
        "a server assembled by `server.app.start` (store, law cache, warm solver pool), without "
        "the gRPC transport, requests built before the clock starts. *Round trip*: a synchronous "
        "stub to a `planner-server` subprocess (default settings) on 127.0.0.1, including "
        "serialising, sending and parsing both messages. Budgets 1e20..1e24 FLOPs, no caps "
        f"(every row closed form); family `{FAMILY}`. PredictBatch: points over N 1e8..7e10, "
        f"5..200 tokens per parameter; with_band on a family fitted here with "
        f"{bench.ensemble_rows} bootstrap rows."
    )
    out.append("")
    if bench.note:
        out += [bench.note, ""]
    out.append("| call | path | rows per call | calls | p50 per call | rows/s | vs single calls |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for rate in bench.rates:
        single = bench.rate("PlanComputeOptimal (single calls)", rate.path)
        ratio = (
            f"{rate.per_second / single.per_second:,.0f}x"
            if single is not None and single.per_second and rate.what.startswith("PlanCompute")
            else "—"
        )
        out.append(
            f"| {rate.what} | {rate.path} | {rate.rows:,} | {rate.seconds.count:,} | "
            f"{_duration(rate.seconds.median)} | {rate.per_second:,.0f} | {ratio} |"
        )
    out.append("")
    return out
