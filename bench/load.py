"""A bounded sustained-load probe with grpc.aio: N concurrent callers on loopback.

Every caller loops: build the next request (each one distinct, so nothing is answered from a
cache keyed by value), send it with a deadline, record the latency. `sustained_load` sends
PlanComputeOptimal requests; `sustained_calls` any call a `Prepare` builds (bench/replicas.py
mixes reads, plans and writes). The probe stops at `max_requests` or `max_seconds`, whichever
comes first, after an unrecorded warm-up. CPU time of this client process, of the server's
process tree (and of a database server's, when given) is read from /proc, to show which side
was the bottleneck.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.service import RequestFactory
from bench.stats import Summary, summarize
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as pb_grpc

TICKS = os.sysconf("SC_CLK_TCK")

# Sends one prepared request on a stub with a deadline (s); True when the answer is as
# expected. An RPC error propagates and is counted by its status code.
Send = Callable[[pb_grpc.PlannerServiceStub, float], Awaitable[bool]]
# Builds request number `serial` (outside the timed part of the call) and returns its Send.
Prepare = Callable[[int], Send]


@dataclass(frozen=True)
class LoadSettings:
    concurrency: int
    channels: int
    max_requests: int
    max_seconds: float
    warmup_seconds: float
    deadline: float

    @staticmethod
    def for_mode(quick: bool) -> LoadSettings:
        if quick:
            return LoadSettings(64, 4, 2_000, 0.75, 0.2, 10.0)
        return LoadSettings(64, 4, 50_000, 10.0, 1.0, 10.0)


@dataclass(frozen=True)
class LoadResult:
    name: str
    settings: LoadSettings
    completed: int
    errors: dict[str, int]
    wrong_path: int
    elapsed: float
    latency: Summary
    client_cpu: float
    server_cpu: float | None
    machine_cpu: float | None
    stopped_by: str
    # The database server's process tree (PostgreSQL), when one was named.
    database_cpu: float | None = None

    @property
    def other_cpu(self) -> float | None:
        """CPU-seconds used during the probe by processes other than client, server (and
        database server)."""
        if self.machine_cpu is None or self.server_cpu is None:
            return None
        used = self.server_cpu + self.client_cpu + (self.database_cpu or 0.0)
        return max(0.0, self.machine_cpu - used)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def qps(self) -> float:
        return (self.completed + self.error_count) / self.elapsed if self.elapsed > 0 else 0.0


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is parenthesised and may hold spaces; fields resume after its ')'.
    return text[text.rindex(")") + 2 :].split()


def machine_busy_cpu() -> float | None:
    """CPU-seconds all processes on the machine have spent busy (not idle or iowait)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    values = [int(v) for v in fields[1:9]]
    return (sum(values) - values[3] - values[4]) / TICKS


def process_tree_cpu(root: int) -> float | None:
    """user + system CPU seconds of `root` and every live descendant, from /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        # After the name: state ppid ... utime (14th field overall) stime (15th).
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    if root not in cpu:
        return None
    tree = {root}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return sum(cpu[pid] for pid in tree)


def _plans(make: RequestFactory, check: Callable[[pb.PlanComputeOptimalResponse], bool]) -> Prepare:
    """PlanComputeOptimal of make(serial), its answer judged by `check`."""

    def prepare(serial: int) -> Send:
        request = make(serial)

        async def send(stub: pb_grpc.PlannerServiceStub, deadline: float) -> bool:
            return check(await stub.PlanComputeOptimal(request, timeout=deadline))

        return send

    return prepare


def _tree_cpu(pid: int | None) -> float | None:
    return None if pid is None else process_tree_cpu(pid)


def _used(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


async def _probe(
    target: str,
    name: str,
    prepare: Prepare,
    settings: LoadSettings,
    server_pid: int | None,
    database_pid: int | None = None,
) -> LoadResult:
    # A local subchannel pool: each channel its own connection, not one shared through gRPC's
    # global pool (a server of several processes balances per connection).
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(target, options=options) for _ in range(settings.channels)
    ]
    stubs = [pb_grpc.PlannerServiceStub(channel) for channel in channels]
    clock = time.perf_counter
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    wrong = 0
    issued = 0  # requests started in the current phase (the count bound)
    serial = 0  # requests started in all phases: each one is distinct
    recording = False
    stop_at = 0.0
    limit = settings.max_requests
    last_done = 0.0

    async def caller(number: int) -> None:
        nonlocal issued, serial, wrong, last_done
        stub = stubs[number % len(stubs)]
        while True:
            now = clock()
            if now >= stop_at or (recording and issued >= limit):
                return
            issued += 1
            serial += 1
            send = prepare(serial)
            start = clock()
            try:
                right = await send(stub, settings.deadline)
            except grpc.aio.AioRpcError as error:
                if recording:
                    errors[error.code().name] += 1
                continue
            finally:
                last_done = clock()
            if recording:
                latencies.append(last_done - start)
                wrong += 0 if right else 1

    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), timeout=10.0)
        # Warm-up: same callers, nothing recorded.
        stop_at = clock() + settings.warmup_seconds
        await asyncio.gather(*(caller(n) for n in range(settings.concurrency)))
        issued = 0
        recording = True
        cpu_client = time.process_time()
        cpu_server = _tree_cpu(server_pid)
        cpu_database = _tree_cpu(database_pid)
        cpu_machine = machine_busy_cpu()
        began = clock()
        stop_at = began + settings.max_seconds
        await asyncio.gather(*(caller(n) for n in range(settings.concurrency)))
        elapsed = max(last_done, began) - began
        client_cpu = time.process_time() - cpu_client
        server_after = _tree_cpu(server_pid)
        database_after = _tree_cpu(database_pid)
        machine_after = machine_busy_cpu()
    finally:
        for channel in channels:
            await channel.close()
    return LoadResult(
        name=name,
        settings=settings,
        completed=len(latencies),
        errors=dict(errors),
        wrong_path=wrong,
        elapsed=elapsed,
        latency=summarize(latencies),
        client_cpu=client_cpu,
        server_cpu=_used(cpu_server, server_after),
        machine_cpu=_used(cpu_machine, machine_after),
        stopped_by="count" if issued >= limit else "time",
        database_cpu=_used(cpu_database, database_after),
    )


def sustained_load(
    target: str,
    name: str,
    make: RequestFactory,
    check: Callable[[pb.PlanComputeOptimalResponse], bool],
    settings: LoadSettings,
    server_pid: int | None,
) -> LoadResult:
    return asyncio.run(_probe(target, name, _plans(make, check), settings, server_pid))


def sustained_calls(
    target: str,
    name: str,
    prepare: Prepare,
    settings: LoadSettings,
    server_pid: int | None,
    database_pid: int | None = None,
) -> LoadResult:
    """The probe of `sustained_load` with any calls: `prepare(serial)` builds each request."""
    return asyncio.run(_probe(target, name, prepare, settings, server_pid, database_pid))
