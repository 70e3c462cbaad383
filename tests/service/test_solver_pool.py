"""The warm solver pool survives a worker that dies."""

from __future__ import annotations

import asyncio
import os
import signal

from server.solver_pool import SolverPool


def test_a_killed_worker_is_replaced_and_the_call_succeeds() -> None:
    async def scenario() -> tuple[set[int], int]:
        pool = SolverPool(1)
        try:
            pids = await pool.warm()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.5)
            # The next call meets the broken pool, which is replaced; the call is retried.
            return pids, await pool.run(os.getpid)
        finally:
            pool.shutdown()

    killed, answered_by = asyncio.run(scenario())
    assert answered_by not in killed
