"""A warm pool of worker processes for solver work, so solves never block the event loop.

Workers start with forkserver (gRPC's threads do not survive fork), import cvxpy and compile
every GP shape in their initializer; `warm()` makes sure all of them have done so before the
server reports SERVING.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)
P = ParamSpec("P")


class SolverPoolUnavailable(Exception):
    """No solver process could take the work right now (the pool is being replaced)."""


T = TypeVar("T")


def _initialise_worker() -> None:
    from threadpoolctl import threadpool_limits

    from planner.planning import allocation, geometric_program, inference
    from server.logs import configure as configure_logs
    from server.parent_death import die_with_parent

    die_with_parent()  # the parent is the forkserver, which dies with the server
    configure_logs()  # warnings raised in solves go to the log as JSON lines too

    # Two processes share two cores: a BLAS pool per process oversubscribes them (a Huber
    # bootstrap ran 3x slower with default threads).
    threadpool_limits(1)

    geometric_program.warm_up()
    inference.warm_up()
    allocation.warm_up()
    # PredictCurve and PlanSchedule run here: import their work now, not on the first call.
    import server.curve_work  # noqa: F401


def _ready(hold_seconds: float) -> int:
    # Holding each task briefly makes the executor start one process per task.
    time.sleep(hold_seconds)
    return os.getpid()


class SolverPool:
    """Runs picklable callables in warm worker processes."""

    def __init__(self, processes: int, saturation: int | None = None) -> None:
        self.processes = processes
        self._executor = self._new_executor()
        self.in_flight = 0  # calls submitted and not finished
        self.calls = 0  # finished calls and their seconds (queue wait included), for metrics
        self.seconds = 0.0
        # More calls waiting than this makes the pool saturated; it recovers below half.
        self.saturation = saturation if saturation is not None else 16 * processes
        self.saturated = False
        self.on_saturation: Callable[[bool], None] | None = None

    def _track(self, change: int) -> None:
        self.in_flight += change
        waiting = self.in_flight - self.processes
        now = waiting > self.saturation if not self.saturated else waiting > self.saturation // 2
        if now != self.saturated:
            self.saturated = now
            log.warning("solver processes %s (%d calls waiting)",
                        "saturated" if now else "recovered", max(waiting, 0))  # fmt: skip
            if self.on_saturation is not None:
                self.on_saturation(now)

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        # The forkserver dies with this process, and its workers with it (parent_death).
        context.set_forkserver_preload(["server.forkserver_preload"])
        return ProcessPoolExecutor(
            max_workers=self.processes, mp_context=context, initializer=_initialise_worker
        )

    async def warm(self) -> set[int]:
        """Start every worker and wait until each has compiled its problems; their pids."""
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._executor, _ready, 0.2) for _ in range(self.processes)]
        return set(await asyncio.gather(*futures))

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if kwargs:
            raise TypeError("SolverPool.run takes positional arguments only")
        self._track(+1)
        started = time.perf_counter()
        try:
            return await self._run(fn, *args)
        finally:
            self._track(-1)
            self.calls += 1
            self.seconds += time.perf_counter() - started

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): replace the pool once and retry, so one
            # lost process does not fail every later solve.
            if self._executor is executor:
                log.warning("a solver process died; starting a new pool")
                executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
            try:
                return await loop.run_in_executor(self._executor, fn, *args)
            except BrokenProcessPool as exc:
                raise SolverPoolUnavailable("the solver processes are restarting; retry") from exc

    def shutdown(self) -> None:
        """Stop at once: queued calls are cancelled and the processes killed (a solve is
        sub-second work; shutdown must not wait on anything unbounded)."""
        processes = list(getattr(self._executor, "_processes", {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # no public API before Python 3.14's terminate_workers
            process.kill()
        for process in processes:
            process.join(timeout=2.0)
