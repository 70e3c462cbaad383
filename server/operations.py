"""Long-running operations: fits and backtests run as tasks that outlive their callers.

The store holds every operation (state, progress, result), so any replica can report it; this
process's runner holds the tasks it runs, at most `max_running` at once and `max_queued` more
waiting, and refuses beyond that (RESOURCE_EXHAUSTED with a retry hint). Progress is kept live
in memory for watchers here and written to the store at most once a second. Running operations
beat a heartbeat into the store; a server that starts (or notices a dead peer's stale heartbeat)
takes over interrupted operations and runs them again from the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from server.errors import failure_of
from server.refusals import deadline_passed, overloaded, shutting_down
from server.store import Store
from server.store.errors import OperationDone
from server.store.records import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    OperationRecord,
)

log = logging.getLogger(__name__)

# How often running operations beat, and how old a beat must be before others take over.
HEARTBEAT_SECONDS = 5.0
STALE_BEATS = 6
# Progress reaches the store at most this often (watchers on this replica see every step).
PROGRESS_WRITE_SECONDS = 1.0


@dataclass
class Progress:
    stage: str
    done: int
    total: int


ReportProgress = Callable[[Progress], None]
# What an operation does, given its id and a progress callback; returns result bytes to store
# (None when the work completed the operation in the store itself, as a fit does with its law).
Work = Callable[[str, ReportProgress], Awaitable[bytes | None]]


@dataclass
class Live:
    """An operation this process runs: its latest progress, and an event set on each change."""

    progress: Progress = field(default_factory=lambda: Progress("queued", 0, 0))
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    error: Exception | None = None  # why it failed, for a synchronous caller to re-raise
    task: asyncio.Task[None] | None = None
    written_at: float = 0.0
    # A synchronous caller (FitLaw) waits on it: on shutdown it is cancelled, not resumed, since
    # that caller is told to retry.
    attached: bool = False
    # Queues that receive every progress step, then None when the operation ends.
    subscribers: list[asyncio.Queue[Progress | None]] = field(default_factory=list)

    def touch(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[Progress | None]:
        """Every progress step from now on (a stream's caller must see each one)."""
        queue: asyncio.Queue[Progress | None] = asyncio.Queue()
        self.subscribers.append(queue)
        return queue

    def publish(self, progress: Progress | None) -> None:
        if progress is not None:
            self.progress = progress
        for queue in self.subscribers:
            queue.put_nowait(progress)
        self.touch()


class OperationRunner:
    """Starts, runs, cancels and resumes this process's operations."""

    def __init__(
        self,
        store: Store,
        max_running: int,
        max_queued: int,
        timeout_seconds: float,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.store = store
        self.heartbeat_seconds = heartbeat_seconds
        # A peer that missed this many beats is taken for dead; its operations are taken over.
        self.stale_seconds = STALE_BEATS * heartbeat_seconds
        self.owner = f"server-{uuid.uuid4().hex[:12]}"
        self.max_running = max_running
        self.max_queued = max_queued
        self.timeout_seconds = timeout_seconds
        self._slots = asyncio.Semaphore(max_running)
        self._live: dict[str, Live] = {}
        self._resume: dict[str, Callable[[OperationRecord], Work]] = {}
        self._accepting = True
        self._heartbeat: asyncio.Task[None] | None = None
        # Operations this process ran to an end, by outcome (succeeded, failed, stopped).
        self.ended: Counter[str] = Counter()

    def resumes(self, kind: str, rebuild: Callable[[OperationRecord], Work]) -> None:
        """How to run a `kind` operation again from its stored request (after an interruption)."""
        self._resume[kind] = rebuild

    @property
    def active(self) -> int:
        return len(self._live)

    def counts(self) -> dict[str, int]:
        """This process's operations waiting for a slot and running."""
        queued = sum(1 for live in self._live.values() if live.progress.stage == "queued")
        return {"queued": queued, "running": len(self._live) - queued}

    def live(self, operation_id: str) -> Live | None:
        return self._live.get(operation_id)

    async def start(self, kind: str, family: str, request: bytes, work: Work) -> OperationRecord:
        """Store a new operation and run it (as soon as a slot frees); refused when full."""
        if not self._accepting:
            raise shutting_down()
        if self.active >= self.max_running + self.max_queued:
            raise overloaded(
                f"{self.active} operations are running or queued on this server (the limit is "
                f"{self.max_running} running + {self.max_queued} queued); retry later",
                retry_after=10.0,
            )
        operation_id = uuid.uuid4().hex
        live = Live()
        self._live[operation_id] = live  # counted before the first await: the bound holds
        try:
            record = await asyncio.to_thread(
                self.store.create_operation, operation_id, family, kind, request, self.owner
            )
        except BaseException:
            del self._live[operation_id]
            raise
        live.task = asyncio.create_task(self._run(operation_id, live, work))
        return record

    async def cancel(self, operation_id: str, message: str) -> OperationRecord:
        """Mark the operation CANCELLED (unless done) and stop its computation if it runs here."""
        await asyncio.to_thread(
            self.store.finish_operation,
            operation_id,
            CANCELLED,
            error_code="CANCELLED",
            error_message=message,
        )
        live = self._live.get(operation_id)
        if live is not None and live.task is not None:
            live.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(live.task)  # the worker is stopped when this returns
        return await asyncio.to_thread(self.store.get_operation, operation_id)

    async def watch(self, operation_id: str, poll_seconds: float = 1.0) -> AsyncIterator[None]:
        """Yields whenever the operation may have changed; the caller re-reads it."""
        while True:
            if not self._accepting:  # shutting down: watch again on another replica
                raise shutting_down()
            live = self._live.get(operation_id)
            if live is None:  # finished here, or runs on another replica: poll the store
                yield None
                await asyncio.sleep(poll_seconds)
                continue
            changed = live.changed
            yield None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll_seconds)

    async def _run(self, operation_id: str, live: Live, work: Work) -> None:
        outcome = "stopped"  # cancelled (before or while running) or interrupted by shutdown
        try:
            async with self._slots:
                if not await asyncio.to_thread(
                    self.store.update_operation, operation_id, RUNNING, ("starting", 0, 0)
                ):
                    return  # cancelled while it waited
                live.publish(Progress("starting", 0, 0))
                await self._execute(operation_id, live, work)
                outcome = "failed" if live.error is not None else "succeeded"
        except asyncio.CancelledError:
            raise
        except Exception:  # the store failed; a stale heartbeat lets a server retry it later
            outcome = "failed"
            log.exception("operation %s could not be run or recorded", operation_id)
        finally:
            self._live.pop(operation_id, None)
            live.publish(None)
            self.ended[outcome] += 1

    async def _execute(self, operation_id: str, live: Live, work: Work) -> None:
        def report(progress: Progress) -> None:
            stage_changed = progress.stage != live.progress.stage
            live.publish(progress)
            now = time.monotonic()
            if stage_changed or now - live.written_at >= PROGRESS_WRITE_SECONDS:
                live.written_at = now
                step = (progress.stage, progress.done, progress.total)
                asyncio.get_running_loop().run_in_executor(
                    None, self._write_progress, operation_id, step
                )

        try:
            async with asyncio.timeout(self.timeout_seconds):
                result = await work(operation_id, report)
        except TimeoutError:
            await self._fail(operation_id, live, deadline_passed(self.timeout_seconds))
            return
        except OperationDone:
            return  # cancelled while its result was being stored: nothing was stored
        except Exception as error:
            await self._fail(operation_id, live, error)
            return
        if result is not None:
            await asyncio.to_thread(
                self.store.finish_operation, operation_id, SUCCEEDED, result=result
            )

    def _write_progress(self, operation_id: str, step: tuple[str, int, int]) -> None:
        try:
            self.store.update_operation(operation_id, None, step)
        except Exception:  # progress is advisory; the final state is written on its own
            log.warning("could not store the progress of operation %s", operation_id, exc_info=True)

    async def _fail(self, operation_id: str, live: Live, error: Exception) -> None:
        live.error = error
        failure = failure_of(error, f"operation {operation_id}")
        await asyncio.to_thread(
            self.store.finish_operation,
            operation_id,
            FAILED,
            error_code=failure.code.name,
            error_message=failure.message,
        )

    async def resume_interrupted(self) -> int:
        """Take over operations whose server stopped or died, and run them again."""
        stale_before = time.time() - self.stale_seconds
        claimed = await asyncio.to_thread(self.store.claim_operations, self.owner, stale_before)
        for record in claimed:
            rebuild = self._resume.get(record.kind)
            if rebuild is None:
                await asyncio.to_thread(
                    self.store.finish_operation,
                    record.id,
                    FAILED,
                    error_code="UNIMPLEMENTED",
                    error_message=f"this server cannot resume {record.kind!r} operations",
                )
                continue
            live = Live()
            self._live[record.id] = live
            live.task = asyncio.create_task(self._run(record.id, live, rebuild(record)))
            log.info("resuming operation %s (%s, attempt %d)", record.id, record.kind,
                     record.attempt)  # fmt: skip
        return len(claimed)

    def start_heartbeat(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            beats += 1
            try:
                if self._live:
                    await asyncio.to_thread(self.store.heartbeat_operations, list(self._live))
                    await self._stop_cancelled_elsewhere()
                if beats % STALE_BEATS == 0:
                    await self.resume_interrupted()  # a peer died: its operations go on here
            except Exception:  # the database may be away for a while; beat again later
                log.warning("operation heartbeat failed", exc_info=True)

    async def _stop_cancelled_elsewhere(self) -> None:
        """Stop the work of operations cancelled through another replica (its store row is done
        while the task here still runs)."""
        for operation_id, live in list(self._live.items()):
            if live.task is None:  # still being created
                continue
            record = await asyncio.to_thread(self.store.get_operation, operation_id)
            if record.done:
                log.info("operation %s was %s elsewhere; stopping it", operation_id, record.state)
                live.task.cancel()

    async def stop(self) -> int:
        """Refuse new operations, stop running ones at once and mark them INTERRUPTED (the
        next server to start resumes them); how many were interrupted."""
        self._accepting = False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for operation_id, live in list(self._live.items()):
            if live.attached:
                await asyncio.to_thread(
                    self.store.finish_operation,
                    operation_id,
                    CANCELLED,
                    error_code="UNAVAILABLE",
                    error_message="the server shut down during the call; retry it",
                )
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return await asyncio.to_thread(self.store.interrupt_operations, self.owner)
