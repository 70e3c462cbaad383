"""PlanComputeOptimal over gRPC: a real server on a loopback port, round trips, handler time.

Round trips are measured with a synchronous stub on one channel, each plan call interleaved
with a grpc.health.v1 Check on the same channel. The server exposes no timing of its own, so
its share is estimated as the plan round trip minus the health round trip (both medians of the
same run). Separately, the PlanComputeOptimal handler coroutine is timed in-process on a server
assembled by `server.app.start` (store, warm solver pool), without gRPC transport.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.domain import EPOCH_LAW, GP_BUDGET, PARAMS_CAP, K, log
from bench.stats import Summary, jitter, summarize
from planner.planning import closed_form
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as pb_grpc

FAMILY = "chinchilla-epoch-2024"
CLOSED_FORM_BUDGET = 1e23
CLOSED_FORM_SOLVER = "closed_form"
RequestFactory = Callable[[int], pb.PlanComputeOptimalRequest]


# -- requests ----------------------------------------------------------------------------------


def closed_form_request(index: int) -> pb.PlanComputeOptimalRequest:
    """Budget around 1e23 FLOPs (x0.5 to x1.5), no caps: answered by the closed form."""
    request = pb.PlanComputeOptimalRequest(law=pb.LawSelector(family=FAMILY))
    request.budget.flops = CLOSED_FORM_BUDGET * jitter(index, 0.5)
    return request


def capped_request(index: int) -> pb.PlanComputeOptimalRequest:
    """Budget around 1e25 FLOPs with max_params = 1e11 (the optimum is ~3e11): a GP solve."""
    request = pb.PlanComputeOptimalRequest(law=pb.LawSelector(family=FAMILY))
    request.budget.flops = GP_BUDGET * jitter(index, 0.1)
    request.max_params = PARAMS_CAP
    return request


def closed_form_mix(index: int) -> pb.PlanComputeOptimalRequest:
    """Budgets log-uniform-ish over 1e21..1e25 FLOPs, no caps."""
    request = pb.PlanComputeOptimalRequest(law=pb.LawSelector(family=FAMILY))
    request.budget.flops = 10.0 ** (23.0 + 2.0 * (jitter(index, 1.0) - 1.0))
    return request


def gp_mix(index: int) -> pb.PlanComputeOptimalRequest:
    """Budgets over 1e23..1e25 FLOPs, alternately max_params or max_tokens binding at 30-70%
    of the unconstrained optimum."""
    request = pb.PlanComputeOptimalRequest(law=pb.LawSelector(family=FAMILY))
    compute = 10.0 ** (24.0 + (jitter(index, 1.0) - 1.0))
    n0, d0 = closed_form.optimal_allocation(EPOCH_LAW, compute, K)
    request.budget.flops = compute
    share = 0.5 + 0.2 * (jitter(index * 7 + 3, 1.0) - 1.0)
    if index % 2 == 0:
        request.max_params = n0 * share
    else:
        request.max_tokens = d0 * share
    return request


def expects_gp(reply: pb.PlanComputeOptimalResponse) -> bool:
    return reply.solver.startswith("gp/") and len(reply.binding) >= 2


def expects_closed_form(reply: pb.PlanComputeOptimalResponse) -> bool:
    return reply.solver == CLOSED_FORM_SOLVER


# -- a server subprocess -----------------------------------------------------------------------


@dataclass(frozen=True)
class FirstRequest:
    """The first PlanComputeOptimal answered after health reported SERVING."""

    seconds_to_serving: float
    latency: float
    deadline: float
    status: str


def first_request(target: str, seconds_to_serving: float, deadline: float) -> FirstRequest:
    """One capped (GP) plan sent right after SERVING, with `deadline` seconds to answer."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.PlannerServiceStub(channel)
        start = time.perf_counter()
        try:
            reply = stub.PlanComputeOptimal(capped_request(-100_000), timeout=deadline)
            status = "OK" if expects_gp(reply) else f"OK but solver {reply.solver!r}"
        except grpc.RpcError as error:
            status = error.code().name
        latency = time.perf_counter() - start
    return FirstRequest(seconds_to_serving, latency, deadline, status)


# -- round trips -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundTrips:
    """Plan and health round trips of one interleaved run, and how the plans were answered."""

    name: str
    plan: Summary
    health: Summary
    wrong_path: int
    errors: dict[str, int]

    @property
    def server_side_estimate(self) -> float:
        """Median plan round trip minus median health round trip (s)."""
        return self.plan.median - self.health.median


def round_trips(
    target: str,
    name: str,
    make: RequestFactory,
    check: Callable[[pb.PlanComputeOptimalResponse], bool],
    count: int,
    max_seconds: float,
    warmup: int = 50,
) -> RoundTrips:
    plan_samples: list[float] = []
    health_samples: list[float] = []
    errors: Counter[str] = Counter()
    wrong = 0
    clock = time.perf_counter
    health_request = health_pb2.HealthCheckRequest()
    with grpc.insecure_channel(target) as channel:
        plan = pb_grpc.PlannerServiceStub(channel).PlanComputeOptimal
        health = health_pb2_grpc.HealthStub(channel).Check
        for index in range(warmup):
            health(health_request, timeout=10.0)
            plan(make(-1 - index), timeout=10.0)
        stop = clock() + max_seconds
        for index in range(count):
            request = make(index)
            # Alternate the order so neither call always follows the other.
            for kind in ("health", "plan") if index % 2 == 0 else ("plan", "health"):
                start = clock()
                try:
                    if kind == "health":
                        health(health_request, timeout=10.0)
                        health_samples.append(clock() - start)
                    else:
                        reply = plan(request, timeout=10.0)
                        plan_samples.append(clock() - start)
                        wrong += 0 if check(reply) else 1
                except grpc.RpcError as error:
                    errors[error.code().name] += 1
            if clock() > stop:
                break
    return RoundTrips(name, summarize(plan_samples), summarize(health_samples), wrong, dict(errors))


def client_library_round_trips(target: str, count: int, max_seconds: float) -> Summary:
    """Closed-form plans through `clients.client.PlannerClient` (typed results), for scale."""
    from clients.client import PlannerClient

    samples: list[float] = []
    clock = time.perf_counter
    with PlannerClient(target, timeout=10.0) as client:
        for index in range(20):
            client.plan_compute_optimal(FAMILY, compute=CLOSED_FORM_BUDGET * jitter(-1 - index))
        stop = clock() + max_seconds
        for index in range(count):
            start = clock()
            client.plan_compute_optimal(FAMILY, compute=CLOSED_FORM_BUDGET * jitter(index, 0.5))
            samples.append(clock() - start)
            if clock() > stop:
                break
    return summarize(samples)


# -- the handler in-process --------------------------------------------------------------------


@dataclass(frozen=True)
class HandlerTimes:
    """PlanComputeOptimal handler coroutine times (no gRPC transport), or why not measured."""

    closed_form: Summary | None
    capped: Summary | None
    settings: dict[str, str]
    note: str


async def _time_handler(
    handler: Callable[[Any, Any], Any],
    make: RequestFactory,
    check: Callable[[pb.PlanComputeOptimalResponse], bool],
    count: int,
    max_seconds: float,
) -> Summary:
    clock = time.perf_counter
    for index in range(30):
        await handler(make(-1 - index), None)
    samples: list[float] = []
    stop = clock() + max_seconds
    for index in range(count):
        request = make(index)
        start = clock()
        reply = await handler(request, None)
        samples.append(clock() - start)
        if not check(reply):
            raise RuntimeError(f"unexpected solver {reply.solver!r} for {request}")
        if clock() > stop:
            break
    return summarize(samples)


async def _handler_times(workdir: Path, count: int, max_seconds: float) -> HandlerTimes:
    from server.app import start
    from server.config import Settings

    settings = Settings(listen="127.0.0.1:0", database_url=f"sqlite:///{workdir / 'handler.db'}")
    # Take the servicer that `start` registers, however it is constructed.
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
        handler = servicers[0].PlanComputeOptimal
        closed = await _time_handler(
            handler, closed_form_request, expects_closed_form, count, max_seconds
        )
        capped = await _time_handler(handler, capped_request, expects_gp, count // 2, max_seconds)
    finally:
        await running.stop(1.0)
    shown = ("solver_processes", "law_cache_seconds")
    values = {name: str(getattr(settings, name)) for name in shown if hasattr(settings, name)}
    return HandlerTimes(closed, capped, values, "")


def handler_times(workdir: Path, count: int, max_seconds: float) -> HandlerTimes:
    """Time the handler on a server assembled in this process; errors become a note."""
    try:
        return asyncio.run(_handler_times(workdir, count, max_seconds))
    except Exception as error:  # the server's internals may move; the rest still runs
        log(f"in-process handler timing skipped: {type(error).__name__}: {error}")
        return HandlerTimes(None, None, {}, f"not measured: {type(error).__name__}: {error}")
