"""Serving under fits, deadlines, shutdown and clients that never read (issue 10's serving
benchmarks), each through real `planner-server` subprocesses on loopback ports:

1. plans beside fits: capped PlanComputeOptimal calls (a GP solve on a plan worker) from 8
   grpc.aio callers, idle and while two 1,000-resample Huber bootstrap fits run (StartFit, then
   cancelled), in alternating rounds on one server with default settings; a closed-form mix too;
2. deadline to idle: FitLaw of the same slow fit with a 4 s client deadline, and CancelOperation
   of a running StartFit, then how long until no fit worker that existed before the deadline (or
   the cancel) is computing, from the CPU time of the server's descendants in /proc;
3. SIGTERM with an operation running (PLANNER_SHUTDOWN_GRACE_SECONDS=5): time to the server's
   exit and to its last descendant's, the operation INTERRUPTED in the store afterwards, and
   (once) a new server on the same database resuming it as attempt 2;
4. clients that never read: 100 raw HTTP/2 connections (the `h2` package) with a 1 KiB receive
   window and no WINDOW_UPDATE, each sending ListRuns(page_size 10,000) over and over; the
   server's resident memory and whether a health Check answers within 1 s meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import load
from bench.domain import log
from bench.service import closed_form_mix, expects_closed_form
from bench.stats import Summary, jitter
from bench.targets import TargetRow, target_table
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from server.store import Store
from tests.service.processes import alive, descendants, read_proc, vm_rss
from tests.service.server_process import ServerProcess
from tests.service.slow_fits import create_family, noisy_runs, slow_fit, wait_for

FITS_FAMILY = "serving-fits"
FLOOD_FAMILY = "serving-flood"
# The capped plan: max_params binds (the optimum is ~3e10), so a plan worker solves a GP.
PLAN_FAMILY = "chinchilla-hoffmann-2022"
PLAN_BUDGET = 1e23
PLAN_MAX_PARAMS = 1e10
PLAN_MAX_TOKENS = 2e12
GRACE_SECONDS = 5.0
# Targets.
PLAN_P99_TARGET = 50e-3
THROUGHPUT_TARGET = 0.8
IDLE_TARGET = 1.0
EXIT_MARGIN = 2.0
HEALTH_TIMEOUT = 1.0
ISSUE_RSS = int(2.08 * 2**30)  # the server's RSS the issue saw under the same flood
MAX_CONCURRENT_RPCS = 256  # the server's default PLANNER_MAX_CONCURRENT_RPCS
# A process computes while its CPU time grows by BUSY_CPU within any BUSY_WINDOW seconds.
BUSY_WINDOW = 0.1
BUSY_CPU = 0.03
# How long after an event the workers are watched before one is called "still computing".
OBSERVE_SECONDS = 5.0
# The never-reading clients' HTTP/2 receive window per stream (bytes); they never enlarge it.
FLOOD_WINDOW = 1024
SERVICE = pb.DESCRIPTOR.services_by_name["PlannerService"].full_name


@dataclass(frozen=True)
class ServingSettings:
    rounds: int  # idle / fits probe pairs
    probe_seconds: float  # capped-plan probe
    fits_wait: float  # at most this long for both fits to reach their bootstrap
    closed_form_seconds: float  # closed-form probe
    warmup_seconds: float
    callers: int
    channels: int
    stop_trials: int  # FitLaw deadlines, and as many CancelOperations
    fit_deadline: float
    sigterm_trials: int
    flood_connections: int
    flood_calls: int  # ListRuns calls per connection
    flood_runs: int
    flood_gap: float  # seconds between rounds of calls (one per connection)
    # At most this long after the last call is sent, the connections stay open (they close 2 s
    # after every call has been refused or answered in part).
    flood_hold: float

    @staticmethod
    def for_mode(quick: bool) -> ServingSettings:
        if quick:
            return ServingSettings(1, 2.0, 3.0, 1.0, 0.5, 8, 2, 3, 4.0, 1, 20, 2, 10_000, 0.1, 6.0)
        return ServingSettings(
            3, 10.0, 15.0, 2.0, 1.0, 8, 2, 20, 4.0, 5, 100, 20, 10_000, 0.1, 60.0
        )


# -- processes, from /proc ---------------------------------------------------------------------


def settle(root: int, quiet: float = 0.4, cap: float = 20.0) -> float:
    """Wait until `root`'s descendants together use < 5% of a core over `quiet` seconds (a
    cancelled fit's replacement workers import scipy for about a second); seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < cap:
        pids = descendants(root)
        before = {pid: proc.cpu for pid in pids if (proc := read_proc(pid)) is not None}
        time.sleep(quiet)
        used = sum(
            proc.cpu - cpu for pid, cpu in before.items() if (proc := read_proc(pid)) is not None
        )
        if used < 0.05 * quiet and descendants(root) == pids:
            break
    return time.monotonic() - began


def niced_cpu(root: int) -> float:
    """CPU seconds of `root`'s live descendants that run at a raised nice value: the fit
    workers (server/fit_pool.py), not the solver workers."""
    procs = [read_proc(pid) for pid in descendants(root)]
    return sum(p.cpu for p in procs if p is not None and p.nice > 0)


Series = list[tuple[float, float]]  # (monotonic time, CPU seconds; the last value once gone)


class CpuSampler:
    """CPU seconds of every descendant of `root`, sampled every `interval` seconds in a thread;
    the list of processes is re-read every `rescan` samples, and when each was first seen is
    kept (a process first seen after an event did not exist before it)."""

    def __init__(self, root: int, interval: float = 0.02, rescan: int = 10) -> None:
        self.root = root
        self.interval = interval
        self.rescan = rescan
        self.first_seen: dict[int, float] = {}
        self._series: dict[int, Series] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if count % self.rescan == 0:
                for pid in descendants(self.root) - set(self.first_seen):
                    with self._lock:
                        self.first_seen[pid] = now
                        self._series[pid] = []
            with self._lock:
                for pid, points in self._series.items():
                    proc = read_proc(pid)
                    if proc is not None and proc.state != "Z":
                        points.append((now, proc.cpu))
                    elif points:
                        points.append((now, points[-1][1]))  # gone: its CPU time stops
            count += 1
            self._stop.wait(self.interval)

    def snapshot(self, existing_at: float) -> dict[int, Series]:
        """The series of the processes first seen no later than `existing_at`."""
        with self._lock:
            return {
                pid: list(points)
                for pid, points in self._series.items()
                if self.first_seen[pid] <= existing_at and points
            }


def busy_times(points: Series) -> list[tuple[float, float]]:
    """(sample time, time of the last sample at or before it at which the CPU time grew) for
    every sample that ends a BUSY_WINDOW in which the process used >= BUSY_CPU seconds."""
    found: list[tuple[float, float]] = []
    start = 0
    last_growth = points[0][0]
    for index, (now, cpu) in enumerate(points):
        if index and cpu > points[index - 1][1]:
            last_growth = now
        while start + 1 < index and points[start + 1][0] <= now - BUSY_WINDOW:
            start += 1
        if points[start][0] <= now - BUSY_WINDOW and cpu - points[start][1] >= BUSY_CPU:
            found.append((now, last_growth))
    return found


@dataclass(frozen=True)
class Idle:
    """After an event: the workers computing just before it, and when the last stopped."""

    busy_before: int
    stopped: float | None  # monotonic time the last one was last seen computing; None: still
    last_busy: float | None  # same, or None when none computed after the event


def idle_after(sampler: CpuSampler, event: float) -> Idle:
    """Which processes that existed at `event` computed in the 0.3 s before it, and the last
    moment any of them was seen computing (None while one still is)."""
    series = sampler.snapshot(event)
    busy_before = 0
    stops: list[float] = []
    end = max((points[-1][0] for points in series.values()), default=event)
    still = False
    for points in series.values():
        busy = busy_times(points)
        if any(event - 0.3 <= now <= event for now, _ in busy):
            busy_before += 1
        if busy:
            stops.append(busy[-1][1])
            if busy[-1][0] >= end - 2 * sampler.interval:
                still = True  # computing at the latest sample
    after = [stop for stop in stops if stop > event]
    if still:
        return Idle(busy_before, None, None)
    return Idle(busy_before, max(after) if after else event, max(after) if after else None)


def watch_until_idle(sampler: CpuSampler, event: float, quiet: float = 0.3) -> Idle:
    """Keep sampling after `event` until the processes that existed then have computed nothing
    for `quiet` seconds, or OBSERVE_SECONDS pass."""
    while True:
        time.sleep(0.05)
        now = time.monotonic()
        idle = idle_after(sampler, event)
        if idle.stopped is not None and now - idle.stopped >= quiet and now - event >= quiet:
            return idle
        if now - event > OBSERVE_SECONDS:
            return idle


# -- the slow fit ------------------------------------------------------------------------------


def bootstrapping(operation: pb.Operation) -> bool:
    return operation.state == pb.OPERATION_STATE_RUNNING and operation.progress.stage == "bootstrap"


def state_name(value: pb.OperationState.ValueType) -> str:
    return str(pb.OperationState.Name(value)).removeprefix("OPERATION_STATE_")


# -- 1. plans beside fits ----------------------------------------------------------------------


def capped_plan(index: int) -> pb.PlanComputeOptimalRequest:
    """~1e23 FLOPs (x0.9..1.1) with max_params 1e10 binding and max_tokens 2e12: a GP solve."""
    request = pb.PlanComputeOptimalRequest(
        law=pb.LawSelector(family=PLAN_FAMILY),
        max_params=PLAN_MAX_PARAMS,
        max_tokens=PLAN_MAX_TOKENS,
    )
    request.budget.flops = PLAN_BUDGET * jitter(index, 0.1)
    return request


def expects_gp(reply: pb.PlanComputeOptimalResponse) -> bool:
    return reply.solver.startswith("gp/")


@dataclass(frozen=True)
class PlanProbe:
    round: int
    mix: str  # "capped" or "closed form"
    fits: bool  # two bootstrap fits running
    load: load.LoadResult
    load_average: float  # 1-minute, at the start
    resamples_done: int | None  # by the fits during the probe
    fits_running_after: int | None
    stages: str  # the fits' stages when the probe began
    fit_cores: float | None  # CPU of the fit workers per second over the probe (with warm-up)


@dataclass(frozen=True)
class PlansBesideFits:
    probes: list[PlanProbe]
    solver_processes: str
    fit_processes: str

    def capped(self, fits: bool) -> list[PlanProbe]:
        return [p for p in self.probes if p.mix == "capped" and p.fits == fits]

    def closed(self, fits: bool) -> list[PlanProbe]:
        return [p for p in self.probes if p.mix == "closed form" and p.fits == fits]

    def ratios(self, mix: str) -> list[float]:
        """Per round: throughput with fits / idle throughput."""
        out = []
        for number in sorted({p.round for p in self.probes}):
            idle = [p for p in self.probes if p.round == number and p.mix == mix and not p.fits]
            busy = [p for p in self.probes if p.round == number and p.mix == mix and p.fits]
            if idle and busy and idle[0].load.qps > 0:
                out.append(busy[0].load.qps / idle[0].load.qps)
        return out


def _probe(
    server: ServerProcess,
    settings: ServingSettings,
    number: int,
    fits: bool,
    mix: str,
    stub: rpc.PlannerServiceStub,
    operations: list[str],
) -> PlanProbe:
    seconds = settings.probe_seconds if mix == "capped" else settings.closed_form_seconds
    probe_settings = load.LoadSettings(
        settings.callers, settings.channels, 10_000_000, seconds, settings.warmup_seconds, 10.0
    )
    make, check = (
        (capped_plan, expects_gp) if mix == "capped" else (closed_form_mix, expects_closed_form)
    )

    def progress() -> tuple[int, int, str]:
        done = running = 0
        stages = []
        for name in operations:
            operation = stub.GetOperation(pb.GetOperationRequest(name=name), timeout=10)
            done += operation.progress.done if operation.progress.stage == "bootstrap" else 0
            running += operation.state == pb.OPERATION_STATE_RUNNING
            stages.append(operation.progress.stage)
        return done, running, " + ".join(stages)

    average = os.getloadavg()[0]
    before = progress()
    fit_cpu, began = niced_cpu(server.pid), time.monotonic()
    result = load.sustained_load(server.target, mix, make, check, probe_settings, server.pid)
    fit_cpu, began = niced_cpu(server.pid) - fit_cpu, time.monotonic() - began
    after = progress()
    log(
        f"serving: round {number + 1} {mix} {'with two fits' if fits else 'idle'}: "
        f"{result.qps:,.0f}/s, p50 {result.latency.median * 1e3:.1f} ms, p99 "
        f"{result.latency.p99 * 1e3:.1f} ms, {result.error_count} errors"
        + (
            f"; fits ({before[2]}) +{after[0] - before[0]} resamples, {after[1]} running, "
            f"fit workers {fit_cpu / began:.2f} cores"
            if fits
            else ""
        )
    )
    return PlanProbe(
        number,
        mix,
        fits,
        result,
        average,
        after[0] - before[0] if fits else None,
        after[1] if fits else None,
        before[2],
        fit_cpu / began if fits else None,
    )


def plans_beside_fits(server: ServerProcess, settings: ServingSettings) -> PlansBesideFits:
    probes: list[PlanProbe] = []
    with grpc.insecure_channel(server.target) as channel:
        stub = rpc.PlannerServiceStub(channel)
        for number in range(settings.rounds):
            settle(server.pid)
            for mix in ("capped", "closed form"):
                probes.append(_probe(server, settings, number, False, mix, stub, []))
            names = [stub.StartFit(slow_fit(FITS_FAMILY), timeout=30).name for _ in range(2)]
            try:
                # Both fits' bootstraps keep both fit workers busy; on a loaded machine the
                # fits' first stage can take long, so the probes start after fits_wait at most.
                with contextlib.suppress(TimeoutError):
                    for name in names:
                        wait_for(stub, name, bootstrapping, settings.fits_wait)
                for mix in ("capped", "closed form"):
                    probes.append(_probe(server, settings, number, True, mix, stub, names))
            finally:
                for name in names:
                    stub.CancelOperation(pb.CancelOperationRequest(name=name), timeout=30)
    return PlansBesideFits(probes, "server default", "server default")


# -- 2. deadline (or cancel) to idle -----------------------------------------------------------


@dataclass(frozen=True)
class StopTrial:
    kind: str  # "FitLaw deadline" or "CancelOperation"
    trial: int
    outcome: str  # the FitLaw status code / the cancelled operation's state
    operation_state: str
    stage: str  # how far the fit had got when stopped ("fit", "bootstrap")
    busy_before: int  # processes computing in the 0.3 s before the event
    # The event: the client's deadline / CancelOperation sent. Seen: the client got
    # DEADLINE_EXCEEDED / the CancelOperation reply.
    seen_after_event: float
    from_event: float | None  # seconds from the event until no worker computes; None: > cap
    from_seen: float | None
    settle_seconds: float  # waited before the trial for the replacement workers to warm up

    @property
    def valid(self) -> bool:
        """Some worker was computing the fit when it was stopped."""
        return self.busy_before > 0


def _delay(idle: Idle, moment: float) -> float | None:
    if idle.stopped is None:
        return None
    return max(0.0, idle.stopped - moment)


def deadline_trial(
    server: ServerProcess, stub: rpc.PlannerServiceStub, trial: int, deadline: float
) -> StopTrial:
    waited = settle(server.pid)
    stage = "queued"
    with CpuSampler(server.pid) as sampler:
        time.sleep(0.3)  # samples from before the call
        start = time.monotonic()
        due = start + deadline
        outcome = "OK"
        try:
            for event in stub.FitLaw(slow_fit(FITS_FAMILY), timeout=deadline):
                if event.HasField("progress"):
                    done = event.progress.stage == "fit" and event.progress.done == 1
                    stage = "bootstrap" if done else event.progress.stage
        except grpc.RpcError as error:
            outcome = error.code().name
        seen = time.monotonic()
        idle = watch_until_idle(sampler, due)
    listed = stub.ListOperations(
        pb.ListOperationsRequest(family=FITS_FAMILY, page_size=1), timeout=10
    ).operations
    state = state_name(listed[0].state) if listed else "n/a"
    return StopTrial(
        "FitLaw deadline",
        trial,
        outcome,
        state,
        stage,
        idle.busy_before,
        seen - due,
        _delay(idle, due),
        _delay(idle, seen),
        waited,
    )


def cancel_trial(server: ServerProcess, stub: rpc.PlannerServiceStub, trial: int) -> StopTrial:
    waited = settle(server.pid)
    with CpuSampler(server.pid) as sampler:
        name = stub.StartFit(slow_fit(FITS_FAMILY), timeout=30).name
        try:
            operation = wait_for(stub, name, bootstrapping, 5)
        except TimeoutError:  # a loaded machine: stop it in its first stage
            operation = stub.GetOperation(pb.GetOperationRequest(name=name), timeout=10)
        time.sleep(0.5)  # into the bootstrap: both workers computing
        sent = time.monotonic()
        reply = stub.CancelOperation(pb.CancelOperationRequest(name=name), timeout=30)
        seen = time.monotonic()
        idle = watch_until_idle(sampler, sent)
    return StopTrial(
        "CancelOperation",
        trial,
        state_name(reply.state),
        state_name(reply.state),
        operation.progress.stage or "queued",
        idle.busy_before,
        seen - sent,
        _delay(idle, sent),
        _delay(idle, seen),
        waited,
    )


# -- 3. SIGTERM with an operation running ------------------------------------------------------


@dataclass(frozen=True)
class Resumed:
    state: str
    attempt: int
    stage: str
    seconds: float  # from the new server's SERVING to the operation RUNNING again
    fit_cores: float  # CPU of the new server's fit workers over the next second


@dataclass(frozen=True)
class ShutdownTrial:
    trial: int
    watcher: bool  # a WatchOperation stream was open on the operation
    processes: int  # descendants of the server at the SIGTERM
    exit_seconds: float | None  # SIGTERM to the server's exit; None: did not exit in time
    tree_seconds: float | None  # SIGTERM to the last descendant's exit
    exit_code: int | None
    stage: str  # the operation's stage at the SIGTERM
    state: str  # the operation's state in the store afterwards
    attempt: int
    resumed: Resumed | None
    note: str = ""


def sigterm_trial(workdir: Path, trial: int, watcher: bool, resume: bool) -> ShutdownTrial:
    database = workdir / f"sigterm-{trial}.db"
    env = {"PLANNER_SHUTDOWN_GRACE_SECONDS": f"{GRACE_SECONDS:g}"}
    limit = GRACE_SECONDS + 15.0
    server = ServerProcess(database, env, solver_processes=None)
    server.start()
    exit_seconds = tree_seconds = None
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = rpc.PlannerServiceStub(channel)
            create_family(stub, FITS_FAMILY, noisy_runs(100))
            name = stub.StartFit(slow_fit(FITS_FAMILY), timeout=30).name
            with contextlib.suppress(TimeoutError):  # a loaded machine: its first stage is slow
                wait_for(stub, name, bootstrapping, 20)
            stage = stub.GetOperation(pb.GetOperationRequest(name=name), timeout=10).progress.stage
            stream = None
            if watcher:
                stream = stub.WatchOperation(pb.WatchOperationRequest(name=name), timeout=60)
                next(stream)  # the stream is open and has answered once
            tree = descendants(server.pid)
            processes = len(tree)
            assert server.process is not None
            sent = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            scans = 0
            while server.process.poll() is None and time.monotonic() - sent < limit:
                if scans % 5 == 0:
                    tree |= descendants(server.pid)
                scans += 1
                time.sleep(0.01)
            if server.process.poll() is not None:
                exit_seconds = time.monotonic() - sent
            while any(alive(pid) for pid in tree) and time.monotonic() - sent < limit:
                time.sleep(0.01)
            if not any(alive(pid) for pid in tree):
                tree_seconds = time.monotonic() - sent
            if stream is not None:
                stream.cancel()
    finally:
        server.stop()
    store = Store(f"sqlite:///{database}")
    try:
        record = store.get_operation(name.removeprefix("operations/"))
    finally:
        store.close()
    resumed = resume_on(database, env, name) if resume else None
    return ShutdownTrial(
        trial,
        watcher,
        processes,
        exit_seconds,
        tree_seconds,
        server.exit_code,
        stage,
        record.state,
        record.attempt,
        resumed,
    )


def resume_on(database: Path, env: dict[str, str], name: str) -> Resumed:
    """A new server on the same database: the interrupted operation runs again (attempt 2)."""
    with (
        ServerProcess(database, env, solver_processes=None) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        began = time.monotonic()
        operation = wait_for(
            stub, name, lambda op: op.attempt >= 2 and op.state == pb.OPERATION_STATE_RUNNING, 60
        )
        seconds = time.monotonic() - began
        before = niced_cpu(server.pid)
        time.sleep(1.0)
        cores = niced_cpu(server.pid) - before  # over that second: the fit is computing
        operation = stub.GetOperation(pb.GetOperationRequest(name=name), timeout=10)
        stub.CancelOperation(pb.CancelOperationRequest(name=name), timeout=30)
    return Resumed(
        state_name(operation.state), operation.attempt, operation.progress.stage, seconds, cores
    )


# -- 4. clients that never read ----------------------------------------------------------------


def _frame_types(data: bytes) -> Counter[int]:
    """HTTP/2 frame types in bytes h2 is about to send (after the client preface)."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    offset = len(preface) if data.startswith(preface) else 0
    types: Counter[int] = Counter()
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        types[data[offset + 3]] += 1
        offset += 9 + length
    return types


WINDOW_UPDATE = 0x8


@dataclass
class Call:
    status: int | None = None  # grpc-status, once the call ended
    message: str = ""  # grpc-message
    data: int = 0  # response bytes received (at most the window)
    reset: bool = False


class NeverReader:
    """One HTTP/2 connection speaking gRPC that sends ListRuns calls and never reads their
    answers: each stream's receive window is FLOOD_WINDOW bytes and no WINDOW_UPDATE is ever
    sent. SETTINGS and PING frames are acknowledged (h2 does so itself), as any HTTP/2 stack
    does while its application ignores the responses."""

    def __init__(self, host: str, port: int) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        from h2.settings import SettingCodes, Settings

        self.authority = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.INITIAL_WINDOW_SIZE: FLOOD_WINDOW,
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            },
        )
        self.conn.initiate_connection()
        self.calls: dict[int, Call] = {}
        self.sent_frames: Counter[int] = Counter()
        self.goaway = False
        self.closed = False
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.sent_frames += _frame_types(data)
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def send(self, payload: bytes) -> None:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", f"/{SERVICE}/ListRuns"),
                (":authority", self.authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.conn.send_data(stream, b"\0" + len(payload).to_bytes(4, "big") + payload, True)
        self.calls[stream] = Call()
        self._flush()

    def readable(self) -> None:
        from h2 import events

        try:
            data = self.sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            call = self.calls.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, events.ResponseReceived | events.TrailersReceived):
                for key, value in event.headers or []:
                    if _text(key) == "grpc-status" and call is not None:
                        call.status = int(_text(value))
                    elif _text(key) == "grpc-message" and call is not None:
                        call.message = unquote(_text(value))
            elif isinstance(event, events.DataReceived) and call is not None:
                call.data += event.flow_controlled_length or 0  # never acknowledged
            elif isinstance(event, events.StreamReset) and call is not None:
                call.reset = True
            elif isinstance(event, events.ConnectionTerminated):
                self.goaway = True
        self._flush()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class HealthProbe:
    at: float  # seconds since the flood began
    phase: str  # "before", "flood", "after close"
    code: str
    seconds: float


@dataclass(frozen=True)
class FloodPoint:
    """The flood at one moment: seconds since it began, server VmRSS, the calls so far."""

    at: float
    rss: int | None
    ended: int
    answering: int
    waiting: int


@dataclass(frozen=True)
class Flood:
    connections: int
    calls_per_connection: int
    runs: int
    response_bytes: int  # one ListRuns(page_size 10,000) answer, serialized
    response_seconds: float  # its round trip, read normally, before the flood
    sent: int
    send_seconds: float
    held_seconds: float  # from the last call sent to the close
    ended: dict[str, int]  # calls that ended, by status code and grpc-message
    answering: int  # open calls whose first response bytes arrived (their handler ran)
    waiting: int  # open calls with no response at all
    reset: int
    goaways: int
    window_updates_sent: int
    rss_before: int | None
    rss_peak: int | None
    rss_at_close: int | None
    rss_after: int | None
    tree_before: int | None
    tree_peak: int | None
    health: list[HealthProbe]
    recovered_seconds: float | None  # from the close to the first SERVING health Check after it
    timeline: list[FloodPoint]
    # One ListRuns(page_size 10,000) in this process, as the handler does it (median of 3):
    # store.list_runs (a worker thread in the server), building the response (its event loop),
    # serialising it (gRPC, on the event loop too).
    cost: tuple[float, float, float] | None
    note: str = ""

    def phase(self, name: str) -> list[HealthProbe]:
        return [h for h in self.health if h.phase == name]


def _tree_rss(pid: int) -> int | None:
    sizes = [vm_rss(p) for p in {pid, *descendants(pid)}]
    known = [s for s in sizes if s is not None]
    return sum(known) if known else None


class _Sampler:
    """A thread calling `sample()` every `interval` seconds until stopped."""

    def __init__(self, interval: float, sample: Callable[[], None]) -> None:
        self.interval = interval
        self.sample = sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()


def _status_name(call: Call) -> str:
    code = next((c.name for c in grpc.StatusCode if c.value[0] == call.status), str(call.status))
    return f"{code} ({call.message!r})" if call.message else code


def seed_flood_family(server: ServerProcess, runs: int) -> tuple[bytes, int, float]:
    """The family of `runs` runs; the ListRuns request for all of them, and one answer's size
    and round trip, read normally."""
    request = pb.ListRunsRequest(family=FLOOD_FAMILY, page_size=runs)
    rows = [
        pb.Run(run_id=f"f{i}", params=1e8 * (1 + i / 1e3), tokens=2e10 + 1e6 * i, loss=3 - i / 1e5)
        for i in range(runs)
    ]
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(server.target, options=options) as channel:
        stub = rpc.PlannerServiceStub(channel)
        create_family(stub, FLOOD_FAMILY, rows)
        began = time.monotonic()
        answer = stub.ListRuns(request, timeout=30)
        seconds = time.monotonic() - began
    return request.SerializeToString(), answer.ByteSize(), seconds


def list_runs_cost(database: Path, runs: int) -> tuple[float, float, float]:
    """Seconds of each step of one ListRuns(page_size `runs`) handler, run here on the
    server's database file: the store query, building the response, serialising it."""
    from server import mapping

    store = Store(f"sqlite:///{database}")
    steps: list[tuple[float, float, float]] = []
    clock = time.perf_counter
    try:
        for _ in range(4):
            start = clock()
            rows = store.list_runs(FLOOD_FAMILY, runs + 1, 0)
            queried = clock()
            response = pb.ListRunsResponse(runs=[mapping.run_message(run) for _, run in rows])
            built = clock()
            response.SerializeToString()
            steps.append((queried - start, built - queried, clock() - built))
    finally:
        store.close()
    median = np.median(np.asarray(steps[1:]), axis=0)
    return float(median[0]), float(median[1]), float(median[2])


def flood(server: ServerProcess, settings: ServingSettings) -> Flood:
    payload, response_bytes, response_seconds = seed_flood_family(server, settings.flood_runs)
    try:
        cost: tuple[float, float, float] | None = list_runs_cost(
            server.database, settings.flood_runs
        )
    except Exception as error:  # the server's internals may move; the flood still runs
        log(f"serving: ListRuns cost not measured: {type(error).__name__}: {error}")
        cost = None
    settle(server.pid, cap=5.0)
    rss_before, tree_before = vm_rss(server.pid), _tree_rss(server.pid)
    rss: list[int] = []
    trees: list[int] = []
    health: list[HealthProbe] = []
    timeline: list[FloodPoint] = []
    phase = "before"
    began = time.monotonic()
    health_channel = grpc.insecure_channel(server.target)
    check = health_pb2_grpc.HealthStub(health_channel).Check
    readers: list[NeverReader] = []

    def sample_rss() -> None:
        value = vm_rss(server.pid)
        if value is not None:
            rss.append(value)

    def sample_tree() -> None:
        value = _tree_rss(server.pid)
        if value is not None:
            trees.append(value)

    def probe_health() -> None:
        start = time.monotonic()
        try:
            reply = check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT)
            code = str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        except grpc.RpcError as error:
            code = error.code().name
        health.append(HealthProbe(start - began, phase, code, time.monotonic() - start))

    def counts() -> tuple[int, int, int]:
        calls = [call for reader in readers for call in reader.calls.values()]
        ended = sum(1 for c in calls if c.status is not None or c.reset)
        answering = sum(1 for c in calls if c.status is None and not c.reset and c.data)
        return ended, answering, len(calls) - ended - answering

    selector = selectors.DefaultSelector()

    def pump(seconds: float, until_settled: bool = False) -> None:
        """Read (and acknowledge SETTINGS and PINGs) for `seconds`; with `until_settled`, stop
        2 s after every call has been refused or answered in part."""
        until = time.monotonic() + seconds
        settled_at = None
        while (left := until - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=min(left, 0.05)):
                reader: NeverReader = key.data
                reader.readable()
                if reader.closed:
                    selector.unregister(reader.sock)
            now = time.monotonic()
            if not timeline or now - began - timeline[-1].at >= 5.0:
                timeline.append(FloodPoint(now - began, vm_rss(server.pid), *counts()))
            if until_settled and counts()[2] == 0:
                settled_at = settled_at or now
                if now - settled_at >= 2.0:
                    return

    host, port = server.target.rsplit(":", 1)
    sent = 0
    recovered: float | None = None
    note = ""
    send_seconds = held = 0.0
    with (
        _Sampler(0.1, sample_rss).running(),
        _Sampler(0.5, sample_tree).running(),
        _Sampler(0.5, probe_health).running(),
    ):
        time.sleep(1.0)
        phase = "flood"
        began = time.monotonic()
        try:
            for _ in range(settings.flood_connections):
                reader = NeverReader(host, int(port))
                readers.append(reader)
                selector.register(reader.sock, selectors.EVENT_READ, reader)
            pump(0.2)
            for _ in range(settings.flood_calls):
                for reader in readers:
                    if not reader.closed and not reader.goaway:
                        reader.send(payload)
                        sent += 1
                pump(settings.flood_gap)
            send_seconds = time.monotonic() - began
            pump(settings.flood_hold, until_settled=True)
            held = time.monotonic() - began - send_seconds
        except OSError as error:
            note = f"the flood stopped early: {type(error).__name__}: {error}"
            log(f"serving: {note}")
        timeline.append(FloodPoint(time.monotonic() - began, vm_rss(server.pid), *counts()))
        rss_at_close = vm_rss(server.pid)
        answered = counts()
        phase = "after close"
        closed_at = time.monotonic()
        for reader in readers:
            reader.close()
        selector.close()
        while time.monotonic() - closed_at < 10.0:
            time.sleep(0.1)
            ok = [h for h in health if h.phase == phase and h.code == "SERVING"]
            if ok and time.monotonic() - closed_at >= 3.0:
                recovered = ok[0].at + ok[0].seconds - (closed_at - began)
                break
    health_channel.close()
    calls = [call for reader in readers for call in reader.calls.values()]
    ended = Counter(_status_name(call) for call in calls if call.status is not None)
    return Flood(
        connections=settings.flood_connections,
        calls_per_connection=settings.flood_calls,
        runs=settings.flood_runs,
        response_bytes=response_bytes,
        response_seconds=response_seconds,
        sent=sent,
        send_seconds=send_seconds,
        held_seconds=held,
        ended=dict(ended.most_common()),
        answering=answered[1],
        waiting=answered[2],
        reset=sum(1 for c in calls if c.reset),
        goaways=sum(1 for r in readers if r.goaway),
        window_updates_sent=sum(r.sent_frames[WINDOW_UPDATE] for r in readers),
        rss_before=rss_before,
        rss_peak=max(rss, default=None),
        rss_at_close=rss_at_close,
        rss_after=vm_rss(server.pid),
        tree_before=tree_before,
        tree_peak=max(trees, default=None),
        health=health,
        recovered_seconds=recovered,
        timeline=timeline,
        cost=cost,
        note=note,
    )


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingBench:
    quick: bool
    settings: ServingSettings
    plans: PlansBesideFits | None
    stops: list[StopTrial]
    shutdowns: list[ShutdownTrial]
    flood: Flood | None
    load_average: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


ERRORS = (RuntimeError, grpc.RpcError, OSError, TimeoutError, AssertionError)


def run(quick: bool) -> ServingBench:
    settings = ServingSettings.for_mode(quick)
    notes: list[str] = []
    averages: list[tuple[str, tuple[float, float, float]]] = [("start", os.getloadavg())]
    plans: PlansBesideFits | None = None
    stops: list[StopTrial] = []
    shutdowns: list[ShutdownTrial] = []
    flood_result: Flood | None = None
    with tempfile.TemporaryDirectory(prefix="planner-serving-") as scratch:
        workdir = Path(scratch)
        log("serving: planner-server with default settings for plans beside fits and deadlines")
        try:
            with ServerProcess(workdir / "serving.db", solver_processes=None) as server:
                with grpc.insecure_channel(server.target) as channel:
                    create_family(rpc.PlannerServiceStub(channel), FITS_FAMILY, noisy_runs(100))
                try:
                    plans = plans_beside_fits(server, settings)
                except ERRORS as error:
                    notes.append(f"plans beside fits stopped: {type(error).__name__}: {error}")
                    log(f"serving: {notes[-1]}")
                averages.append(("after plans beside fits", os.getloadavg()))
                with grpc.insecure_channel(server.target) as channel:
                    stub = rpc.PlannerServiceStub(channel)
                    try:
                        for trial in range(settings.stop_trials):
                            stops.append(deadline_trial(server, stub, trial, settings.fit_deadline))
                            _log_stop(stops[-1])
                        for trial in range(settings.stop_trials):
                            stops.append(cancel_trial(server, stub, trial))
                            _log_stop(stops[-1])
                    except ERRORS as error:
                        notes.append(f"deadline trials stopped: {type(error).__name__}: {error}")
                        log(f"serving: {notes[-1]}")
                averages.append(("after deadline trials", os.getloadavg()))
        except RuntimeError as error:  # the server did not start
            notes.append(f"the first server did not start: {error}")
            log(f"serving: {notes[-1]}")
        for trial in range(settings.sigterm_trials):
            watcher = trial % 2 == 1
            log(
                f"serving: SIGTERM trial {trial + 1}"
                + (" (a WatchOperation open)" if watcher else "")
            )
            try:
                shutdowns.append(sigterm_trial(workdir, trial, watcher, resume=trial == 0))
                _log_shutdown(shutdowns[-1])
            except ERRORS as error:
                notes.append(f"SIGTERM trial {trial + 1} failed: {type(error).__name__}: {error}")
                log(f"serving: {notes[-1]}")
        averages.append(("after SIGTERM trials", os.getloadavg()))
        log(
            f"serving: {settings.flood_connections} never-reading connections x "
            f"{settings.flood_calls} ListRuns({settings.flood_runs:,})"
        )
        try:
            with ServerProcess(workdir / "flood.db", solver_processes=None) as server:
                flood_result = flood(server, settings)
            _log_flood(flood_result)
        except ERRORS as error:
            notes.append(f"the flood failed: {type(error).__name__}: {error}")
            log(f"serving: {notes[-1]}")
        except ImportError as error:
            notes.append(f"the flood needs the h2 package (requirements/dev.txt): {error}")
            log(f"serving: {notes[-1]}")
        averages.append(("end", os.getloadavg()))
    return ServingBench(quick, settings, plans, stops, shutdowns, flood_result, averages, notes)


def _log_stop(trial: StopTrial) -> None:
    log(
        f"serving: {trial.kind} {trial.trial + 1}: {trial.outcome}, {trial.busy_before} busy "
        f"before; idle {_ms(trial.from_seen)} after the client saw it, {_ms(trial.from_event)} "
        "after the event"
    )


def _log_shutdown(trial: ShutdownTrial) -> None:
    log(
        f"serving: SIGTERM -> exit {_ms(trial.exit_seconds)}, tree gone {_ms(trial.tree_seconds)}"
        f", code {trial.exit_code}, operation {trial.state} (attempt {trial.attempt})"
        + (
            f"; resumed {trial.resumed.state} attempt {trial.resumed.attempt}"
            if trial.resumed
            else ""
        )
    )


def _log_flood(result: Flood) -> None:
    during = result.phase("flood")
    ok = sum(1 for h in during if h.code == "SERVING")
    log(
        f"serving: flood sent {result.sent}; ended {result.ended}; answering {result.answering}, "
        f"waiting {result.waiting}; RSS {_mib(result.rss_before)} -> peak {_mib(result.rss_peak)}"
        f" -> after {_mib(result.rss_after)}; health OK {ok}/{len(during)} during"
    )


# -- report ------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "n/a"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1.0 else f"{seconds:.3g} s"


def _mib(size: float | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:,.0f} MiB"


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _p99(values: list[float | None]) -> float:
    """p99 of delays, a missing one (still computing at the cap) counting as infinite."""
    if not values:
        return float("nan")
    return float(np.percentile([np.inf if v is None else v for v in values], 99.0))


def targets(bench: ServingBench) -> list[TargetRow]:
    rows: list[TargetRow] = []
    plans = bench.plans
    if plans is not None and plans.capped(True):
        p99s = [p.load.latency.p99 for p in plans.capped(True)]
        idle = [p.load.latency.p99 for p in plans.capped(False)]
        errors = sum(p.load.error_count + p.load.wrong_path for p in plans.capped(True))
        value = _median(p99s)
        rows.append(
            TargetRow(
                "capped `PlanComputeOptimal` p99 while two bootstrap fits run",
                f"< {PLAN_P99_TARGET * 1e3:g} ms",
                f"{_ms(value)} (median of {len(p99s)} rounds' p99; worst {_ms(max(p99s))}; idle "
                f"{_ms(_median(idle))}); {errors} errors",
                value < PLAN_P99_TARGET and errors == 0,
            )
        )
        ratios = plans.ratios("capped")
        ratio = _median(ratios)
        rows.append(
            TargetRow(
                "capped-plan throughput with two bootstrap fits running / idle",
                f">= {THROUGHPUT_TARGET:.0%}",
                f"{ratio:.0%} (median of {len(ratios)} rounds: "
                + ", ".join(f"{r:.0%}" for r in ratios)
                + f"; {_median([p.load.qps for p in plans.capped(True)]):,.0f} vs "
                f"{_median([p.load.qps for p in plans.capped(False)]):,.0f} plans/s)",
                ratio >= THROUGHPUT_TARGET,
            )
        )
    for kind, event, seen in (
        ("FitLaw deadline", "the deadline", "the client saw DEADLINE_EXCEEDED"),
        ("CancelOperation", "CancelOperation was sent", "its reply arrived"),
    ):
        trials = [t for t in bench.stops if t.kind == kind]
        valid = [t for t in trials if t.valid]
        if not trials:
            continue
        from_seen = _p99([t.from_seen for t in valid])
        from_event = _p99([t.from_event for t in valid])
        rows.append(
            TargetRow(
                f"{kind}: from when {seen} until no fit worker computes",
                f"p99 < {IDLE_TARGET:g} s",
                f"p99 {_ms(from_seen)}, p50 {_ms(_median_delay(valid, 'seen'))}; from "
                f"{event}: p99 {_ms(from_event)} ({len(valid)} of {len(trials)} trials had "
                "workers computing at the event)",
                from_seen < IDLE_TARGET if valid else None,
            )
        )
    if bench.shutdowns:
        limit = GRACE_SECONDS + EXIT_MARGIN
        exits = [t.exit_seconds for t in bench.shutdowns]
        trees = [t.tree_seconds for t in bench.shutdowns]
        worst_exit = max((np.inf if e is None else e) for e in exits)
        worst_tree = max((np.inf if e is None else e) for e in trees)
        rows.append(
            TargetRow(
                "SIGTERM with a fit operation running: server exit, and its last descendant's",
                f"< grace + {EXIT_MARGIN:g} s = {limit:g} s",
                f"worst exit {_ms(worst_exit)}, worst descendants gone {_ms(worst_tree)} over "
                f"{len(exits)} trials (median exit {_ms(_median([e for e in exits if e]))})",
                worst_exit < limit and worst_tree < limit,
            )
        )
        states = Counter(t.state for t in bench.shutdowns)
        rows.append(
            TargetRow(
                "the running operation after SIGTERM (store)",
                "INTERRUPTED, attempt 1",
                ", ".join(f"{s} {n}" for s, n in states.items()),
                all(t.state == "INTERRUPTED" and t.attempt == 1 for t in bench.shutdowns),
            )
        )
        resumed = next((t.resumed for t in bench.shutdowns if t.resumed), None)
        rows.append(
            TargetRow(
                "a new server on the same database resumes it",
                "RUNNING again, attempt 2",
                "not measured"
                if resumed is None
                else f"{resumed.state} attempt {resumed.attempt} {_ms(resumed.seconds)} after "
                f"SERVING; its fit workers then used {resumed.fit_cores:.2f} cores",
                None
                if resumed is None
                else resumed.attempt == 2 and resumed.state in ("RUNNING", "SUCCEEDED"),
            )
        )
    result = bench.flood
    if result is not None:
        during = result.phase("flood")
        ok = [h for h in during if h.code == "SERVING" and h.seconds < HEALTH_TIMEOUT]
        rows.append(
            TargetRow(
                f"health Check during {result.connections} never-reading ListRuns clients",
                f"every check answered SERVING within {HEALTH_TIMEOUT:g} s",
                f"{len(ok)} of {len(during)}"
                + (
                    f" ({_codes(Counter(h.code for h in during))})" if len(ok) < len(during) else ""
                ),
                len(ok) == len(during) if during else None,
            )
        )
        peak, before = result.rss_peak, result.rss_before
        growth = None if peak is None or before is None else peak - before
        held = (
            ""
            if growth is None or not result.answering
            else f"; {growth / result.answering / 2**20:.1f} MiB per held answer"
        )
        rows.append(
            TargetRow(
                "server RSS during that flood (the issue saw 296 MiB → 2.08 GiB)",
                f"bounded: < {_mib(ISSUE_RSS)}, at most {MAX_CONCURRENT_RPCS} answers held "
                "(PLANNER_MAX_CONCURRENT_RPCS)",
                f"{_mib(before)} → peak {_mib(peak)} (+{_mib(growth)}) with "
                f"{result.answering} answers held{held}; {_mib(result.rss_after)} after the "
                "clients closed",
                None
                if peak is None
                else peak < ISSUE_RSS and result.answering <= MAX_CONCURRENT_RPCS,
            )
        )
    return rows


def _median_delay(trials: list[StopTrial], which: str) -> float:
    values = [t.from_seen if which == "seen" else t.from_event for t in trials]
    return float(np.median([np.inf if v is None else v for v in values])) if values else np.nan


def _codes(codes: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{code} {count}" for code, count in codes.items()) or "none"


def _cores(value: float | None, elapsed: float) -> str:
    """CPU-seconds per second; n/a when negative (bench/load.py sums the live processes of
    the tree, so one that exited during the probe takes its CPU time with it)."""
    if value is None or elapsed <= 0 or value < 0:
        return "n/a"
    return f"{value / elapsed:.2f}"


def _summary(summary: Summary) -> str:
    return f"{_ms(summary.median)} | {_ms(summary.p90)} | {_ms(summary.p99)}"


def section(bench: ServingBench) -> list[str]:
    out = ["## Serving: plans beside fits, deadlines, shutdown", ""]
    out += target_table(targets(bench))
    out.append("")
    out.append(
        "`bench/serving.py`, each part through `planner-server` subprocesses on 127.0.0.1 with "
        "default settings (2 solver and 2 fit processes on this machine, at most 2 operations "
        "running) and fresh SQLite databases. The slow fit is `FitLaw(method huber, bootstrap "
        "1000)` of 100 runs on Epoch's surface with 1% noise, about a minute of CPU. Load "
        "average (1 min) "
        + ", ".join(f"{label} {values[0]:.2f}" for label, values in bench.load_average)
        + "."
    )
    out.append("")
    for note in bench.notes:
        out.append(f"- {note}")
    if bench.notes:
        out.append("")
    out += _plans_table(bench)
    out += _stops_table(bench)
    out += _shutdown_table(bench)
    out += _flood_table(bench)
    return out


def _plans_table(bench: ServingBench) -> list[str]:
    plans = bench.plans
    if plans is None or not plans.probes:
        return []
    s = bench.settings
    out = ["### Plans while fits run", ""]
    out.append(
        f"Rounds of probes on one server: {s.callers} grpc.aio callers over {s.channels} "
        f"channels (bench/load.py) for {s.probe_seconds:g} s of capped plans (`{PLAN_FAMILY}`, "
        f"~{PLAN_BUDGET:.0e} FLOPs, max_params {PLAN_MAX_PARAMS:.0e} binding, max_tokens "
        f"{PLAN_MAX_TOKENS:.0e}: a GP solve on a plan worker each) and {s.closed_form_seconds:g} "
        f"s of the closed-form mix, after {s.warmup_seconds:g} s of unrecorded warm-up each; "
        "first idle, then while two slow fits run (StartFit twice; the probes begin once both "
        f"are in their bootstrap, or after {s.fits_wait:g} s; cancelled after). CPU columns "
        "are cores (CPU-seconds per second): the client process, the server's process tree "
        "(of which *fit workers*: its processes at a raised nice value, over the probe and its "
        "warm-up), "
        "everything else on the machine."
    )
    out.append("")
    out.append(
        "| round | plans | fits | plans/s | p50 | p90 | p99 | errors | client | server tree | "
        "fit workers | other | load avg | fits' resamples during |"
    )
    out.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in plans.probes:
        r = p.load
        out.append(
            f"| {p.round + 1} | {p.mix} | {'two: ' + p.stages if p.fits else 'none'} | "
            f"{r.qps:,.0f} | {_summary(r.latency)} | {r.error_count + r.wrong_path} | "
            f"{_cores(r.client_cpu, r.elapsed)} | {_cores(r.server_cpu, r.elapsed)} | "
            f"{'—' if p.fit_cores is None else f'{p.fit_cores:.2f}'} | "
            f"{_cores(r.other_cpu, r.elapsed)} | {p.load_average:.2f} | "
            + (
                "—"
                if p.resamples_done is None
                else f"{p.resamples_done} ({p.fits_running_after} still running)"
            )
            + " |"
        )
    out.append("")
    for mix in ("capped", "closed form"):
        ratios = plans.ratios(mix)
        if ratios:
            out.append(
                f"- {mix}: throughput with fits / idle per round "
                + ", ".join(f"{r:.0%}" for r in ratios)
                + f"; median {_median(ratios):.0%}."
            )
    out.append("")
    return out


def _stops_table(bench: ServingBench) -> list[str]:
    if not bench.stops:
        return []
    s = bench.settings
    out = ["### Deadline or cancel to idle workers", ""]
    out.append(
        f"FitLaw of the slow fit with a {s.fit_deadline:g} s client deadline, and StartFit then "
        "CancelOperation 0.5 s into its bootstrap (or 5.5 s after the start, if its first "
        "stage takes longer), one at a time on the server above, each "
        "after its process tree has settled (< 5% of a core for 0.4 s; replacement workers "
        "import scipy first). A thread reads the CPU time of every descendant of the server "
        "from /proc every 20 ms (the list of processes every 200 ms). Only processes that "
        "existed at the event count: a worker computes while its CPU time grows by "
        f"{BUSY_CPU * 1e3:g} ms within {BUSY_WINDOW * 1e3:g} ms, and is idle from the last "
        "sample at which it did (exited workers stop there too). *Event*: the deadline "
        "(call start + timeout, client clock) or the moment CancelOperation was sent; *seen*: "
        "when the client got DEADLINE_EXCEEDED or the CancelOperation reply. Resolution about "
        "20 ms (sampling) plus 10 ms (CPU ticks). Trials in which no worker was computing in "
        "the 0.3 s before the event are left out of the statistics (*computing*)."
    )
    out.append("")
    out.append(
        "| stop | trials | computing | stage stopped in | seen after event p50 / max | idle "
        "after seen p50 | p99 | max | idle after event p50 | p99 | max | operation afterwards |"
    )
    out.append("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|")
    for kind in ("FitLaw deadline", "CancelOperation"):
        trials = [t for t in bench.stops if t.kind == kind]
        if not trials:
            continue
        valid = [t for t in trials if t.valid]
        seen = [t.from_seen for t in valid]
        event = [t.from_event for t in valid]
        lag = [t.seen_after_event for t in trials]
        out.append(
            f"| {kind} | {len(trials)} | {len(valid)} | "
            f"{_codes(Counter(t.stage for t in trials))} | "
            f"{_ms(_median(lag))} / {_ms(max(lag))} | "
            f"{_ms(_median_delay(valid, 'seen'))} | {_ms(_p99(seen))} | "
            f"{_ms(_max(seen))} | "
            f"{_ms(_median_delay(valid, 'event'))} | {_ms(_p99(event))} | {_ms(_max(event))} | "
            f"{_codes(Counter(f'{t.outcome} → {t.operation_state}' for t in trials))} |"
        )
    out.append("")
    out.append(
        "Per trial, milliseconds from seen to idle (workers busy before): "
        + "; ".join(
            f"{kind}: "
            + ", ".join(
                f"{_ms(t.from_seen)} ({t.busy_before})" for t in bench.stops if t.kind == kind
            )
            for kind in ("FitLaw deadline", "CancelOperation")
        )
        + "."
    )
    out.append("")
    return out


def _max(values: list[float | None]) -> float:
    return max((np.inf if v is None else v) for v in values) if values else float("nan")


def _shutdown_table(bench: ServingBench) -> list[str]:
    if not bench.shutdowns:
        return []
    out = ["### SIGTERM with an operation running", ""]
    out.append(
        f"A fresh server per trial (PLANNER_SHUTDOWN_GRACE_SECONDS={GRACE_SECONDS:g}), StartFit "
        "of the slow fit, SIGTERM once it is RUNNING in its bootstrap (or 20 s after the start "
        "if its first stage takes longer on a loaded machine); every other trial keeps "
        "a WatchOperation stream open on it. Times from the signal: to the server process's "
        "exit, and until every process that was its descendant (forkserver, solver and fit "
        "workers, resource tracker) has exited. Then the operation's row is read from the "
        "SQLite database with `server.store.Store`; after the first trial a new server on the "
        "same database is started and the operation watched until it runs again."
    )
    out.append("")
    out.append(
        "| trial | stage at SIGTERM | WatchOperation open | processes | exit | descendants gone "
        "| exit code | operation in the store | resumed by the next server |"
    )
    out.append("|---:|---|---|---:|---:|---:|---:|---|---|")
    for t in bench.shutdowns:
        resumed = (
            "—"
            if t.resumed is None
            else f"{t.resumed.state}, attempt {t.resumed.attempt}, "
            f"{_ms(t.resumed.seconds)} after SERVING; fit workers {t.resumed.fit_cores:.2f} "
            "cores over the next second"
        )
        out.append(
            f"| {t.trial + 1} | {t.stage} | {'yes' if t.watcher else 'no'} | {t.processes} | "
            f"{_ms(t.exit_seconds)} | {_ms(t.tree_seconds)} | {t.exit_code} | "
            f"{t.state}, attempt {t.attempt} | {resumed} |"
        )
    out.append("")
    return out


def _flood_table(bench: ServingBench) -> list[str]:
    result = bench.flood
    if result is None:
        return []
    out = ["### Clients that never read", ""]
    out.append(
        "A fresh server (default settings: PLANNER_MAX_CONCURRENT_RPCS 256), family "
        f"`{FLOOD_FAMILY}` seeded with {result.runs:,} runs; one ListRuns(page_size "
        f"{result.runs:,}) answer is {result.response_bytes / 1e3:,.0f} kB and took "
        f"{_ms(result.response_seconds)} read normally. Then {result.connections} raw HTTP/2 "
        f"connections (the `h2` package over plain sockets) with a {FLOOD_WINDOW} B receive "
        "window per stream that they never enlarge (no WINDOW_UPDATE; SETTINGS and PINGs are "
        f"acknowledged, as any HTTP/2 stack does) each send {result.calls_per_connection} "
        f"ListRuns calls without a deadline, one per connection every "
        f"{bench.settings.flood_gap:g} s, and keep them open until every call has been refused "
        f"or has begun to answer (at most {bench.settings.flood_hold:g} s), then close. "
        "Meanwhile a normal channel sends a health Check (deadline "
        f"{HEALTH_TIMEOUT:g} s) every 0.5 s, and the server's VmRSS is read every 0.1 s."
    )
    out.append("")
    if result.note:
        out += [result.note, ""]
    during = result.phase("flood")
    after = result.phase("after close")
    worst = max((h.seconds for h in during), default=float("nan"))
    out.append("| | |")
    out.append("|---|---|")
    out.append(
        f"| calls sent | {result.sent:,} in {result.send_seconds:.1f} s, then held "
        f"{result.held_seconds:.1f} s |"
    )
    if result.cost is not None:
        query, build, serialise = result.cost
        out.append(
            f"| one ListRuns({result.runs:,}) handler, in-process | store query {_ms(query)} (in a "
            "worker thread, but nearly all of it Python building the run records, which holds "
            f"the GIL), building the response {_ms(build)} and serialising it "
            f"{_ms(serialise)} (both on the event loop) |"
        )
    out.append(f"| calls that ended (status) | {_codes(result.ended)} |")
    out.append(
        f"| calls open at close | {result.answering:,} answering (the first {FLOOD_WINDOW} B "
        f"arrived, the rest held by the server), {result.waiting:,} with no answer yet |"
    )
    out.append(f"| streams reset / connections sent GOAWAY | {result.reset:,} / {result.goaways} |")
    out.append(f"| WINDOW_UPDATE frames sent by the clients | {result.window_updates_sent} |")
    out.append(
        f"| server VmRSS | before {_mib(result.rss_before)}; peak {_mib(result.rss_peak)}; at "
        f"close {_mib(result.rss_at_close)}; 3-10 s after close {_mib(result.rss_after)} |"
    )
    out.append(
        f"| server process tree RSS | before {_mib(result.tree_before)}; peak "
        f"{_mib(result.tree_peak)} |"
    )
    out.append(
        "| over time (s: VmRSS, calls ended / answering / waiting) | "
        + "; ".join(
            f"{p.at:.0f}: {_mib(p.rss)}, {p.ended} / {p.answering} / {p.waiting}"
            for p in result.timeline
        )
        + " |"
    )
    out.append(
        f"| health during the flood | {len(during)} checks: "
        f"{_codes(Counter(h.code for h in during))}; slowest {_ms(worst)} |"
    )
    out.append(
        f"| health after close | {len(after)} checks: {_codes(Counter(h.code for h in after))}; "
        f"first SERVING {_ms(result.recovered_seconds)} after close |"
    )
    out.append("")
    return out
