"""Worker processes for long work (fits, backtests, bootstrap chunks), apart from the plan workers.

Cancelling a call's task (its deadline passed, its caller went away, its operation was cancelled)
stops the computation at once: pebble terminates the worker running it and starts a fresh one,
so abandoned fits never hold a core. Fit workers run at a lower CPU priority, so the plan workers
answer schedulers promptly while fits use whatever CPU is left.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from typing import ParamSpec, TypeVar

from pebble import ProcessExpired, ProcessPool

from server.solver_pool import SolverPoolUnavailable

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

# Added to the workers' nice value: under contention the plan workers get ~10x their CPU share.
FIT_NICENESS = 10


def _initialise_worker() -> None:
    from threadpoolctl import threadpool_limits

    from server.logs import configure as configure_logs
    from server.parent_death import die_with_parent

    die_with_parent()  # the parent is the forkserver, which dies with the server
    configure_logs()  # warnings raised in solves go to the log as JSON lines too
    os.nice(FIT_NICENESS)
    # Two cores for all workers: a BLAS pool per process oversubscribes them.
    threadpool_limits(1)
    import planner.fitting.auto  # noqa: F401  (import scipy and the fitters before the first job)


def _ready(hold_seconds: float) -> int:
    time.sleep(hold_seconds)  # one task per process, so every worker starts
    return os.getpid()


class FitPool:
    """Runs picklable callables in worker processes; a cancelled call's worker is replaced."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["server.forkserver_preload"])
        self._pool = ProcessPool(
            max_workers=processes, initializer=_initialise_worker, context=context
        )
        self.in_flight = 0  # calls scheduled and not finished (queued or running)
        self.calls = 0  # finished calls and their seconds (queue wait included), for metrics
        self.seconds = 0.0
        # pebble hands every scheduled task to its workers' pipe at once, where a cancelled task
        # still costs a worker restart when picked up; so calls wait here, where cancelling one
        # is free, and at most one task per worker is inside pebble.
        self._slots = asyncio.Semaphore(processes)

    async def warm(self) -> set[int]:
        """Start every worker and wait until each has imported the fitters; their pids."""
        pids: set[int] = set()
        for _ in range(50):  # a worker still starting lets another take two holds; ask again
            pids |= set(
                await asyncio.gather(*(self.run(_ready, 0.3) for _ in range(self.processes)))
            )
            if len(pids) >= self.processes:
                break
        return pids

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if kwargs:
            raise TypeError("FitPool.run takes positional arguments only")
        self.in_flight += 1
        started = time.perf_counter()
        try:
            async with self._slots:
                return await self._run(fn, *args)
        finally:
            self.in_flight -= 1
            self.calls += 1
            self.seconds += time.perf_counter() - started

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        future = self._pool.schedule(fn, args=args)
        try:
            # Cancelling the awaiting task cancels the pebble future, which stops its worker.
            return await asyncio.wrap_future(future)
        except ProcessExpired as exc:
            log.warning("a fit worker died (exit code %s); pebble starts another", exc.exitcode)
            raise SolverPoolUnavailable("a fit worker died during the computation; retry") from exc
        except FutureCancelled as exc:  # cancelled from outside this task (pool stopping)
            raise SolverPoolUnavailable("the fit workers are stopping") from exc
        finally:
            future.cancel()  # type: ignore[no-untyped-call]  # stops the worker if still running

    def shutdown(self) -> None:
        """Stop every worker now (running work is abandoned; operations are resumed elsewhere)."""
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=2.0)
