"""Fuzzing every RPC through a real server (issue 10, item 7): 10,000 random, mostly malformed
requests (300 with --quick) from the hypothesis strategies of tests/service/fuzz_requests.py,
drawn derandomized up front, then sent by 8 threads over 2 channels to a dedicated
`planner-server` (default settings, fresh SQLite database, family `fuzz` seeded with 7 runs).
Every RPC the service descriptor has is covered but DeleteFamily, server-streaming ones read to
the end within the deadline. Then random bytes, which are mostly not a valid message of any type,
go to each RPC through identity serializers. Recorded: the status of every call (INTERNAL or
UNKNOWN must never come back), the rate, the server's resident memory before, halfway and after,
the lines it logged, and its health afterwards.
"""

from __future__ import annotations

import random
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import text_format
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings

from bench.domain import log
from bench.stats import Summary, summarize
from tests.service.fuzz_requests import (
    FORBIDDEN,
    REQUESTS,
    build,
    fuzzed_methods,
    method_path,
    seed_family,
)
from tests.service.processes import descendants, vm_rss
from tests.service.server_process import ServerProcess

TARGET_REQUESTS = 10_000
# The first few INTERNAL / UNKNOWN answers are kept with their request, shortened to this.
KEPT_FORBIDDEN = 5
SHOWN_CHARS = 400
KEPT_SLOWEST = 3
KEPT_LOG_LINES = 5
UNDECODABLE = "not a valid"  # in the details of a refusal of bytes that do not decode


@dataclass(frozen=True)
class FuzzSettings:
    requests: int
    undecodable: int
    callers: int
    channels: int
    deadline: float

    @staticmethod
    def for_mode(quick: bool) -> FuzzSettings:
        if quick:
            return FuzzSettings(300, 40, 8, 2, 30.0)
        return FuzzSettings(TARGET_REQUESTS, 600, 8, 2, 30.0)


@dataclass(frozen=True)
class Forbidden:
    """An INTERNAL or UNKNOWN answer: the RPC, the request (shortened) and the details."""

    rpc: str
    code: str
    request: str
    details: str
    server_log: str


@dataclass(frozen=True)
class Memory:
    """VmRSS (bytes) of the server process and of its process tree (+ solver workers)."""

    server: int | None
    tree: int | None


@dataclass(frozen=True)
class FuzzBench:
    settings: FuzzSettings
    rpcs: int
    requests: int
    seconds: float
    draw_seconds: float
    latency: Summary
    slowest: list[tuple[str, float, str]]
    codes: dict[str, int]
    by_rpc: dict[str, dict[str, int]]
    forbidden_count: int
    forbidden: list[Forbidden]
    undecodable_sent: int
    undecodable_codes: dict[str, int]
    undecodable_refused: int
    undecodable_log_lines: int
    fuzz_log_lines: int
    fuzz_log_sample: list[str]
    tracebacks: int
    memory: list[tuple[str, Memory]]
    health_after: str
    server_exit_code: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def rss_growth(self) -> int | None:
        first, last = self.memory[0][1].server, self.memory[-1][1].server
        return None if first is None or last is None else last - first


# -- the requests ------------------------------------------------------------------------------


Request = tuple[MethodDescriptor, Any]


def draw_requests(count: int) -> list[Request]:
    """`count` (method, request message) pairs from the shared strategy, derandomized."""
    drawn: list[tuple[MethodDescriptor, dict[str, Any]]] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(request=REQUESTS)
    def draw(request: tuple[MethodDescriptor, dict[str, Any]]) -> None:
        drawn.append(request)

    draw()
    return [(method, build(method.input_type, values)) for method, values in drawn[:count]]


def undecodable_payloads(count: int, methods: Sequence[MethodDescriptor]) -> list[Request]:
    """Random bytes to each method in turn; every other one starts with a field tag of wire
    type 7 (none exists), the rest are left to chance (some decode as unknown fields)."""
    rng = random.Random(7)
    payloads: list[Request] = []
    for index in range(count):
        body = rng.randbytes(rng.randint(1, 120))
        if index % 2 == 0:
            body = b"\x0f" + body
        payloads.append((methods[index % len(methods)], body))
    return payloads


def shown(request: Any) -> str:
    if isinstance(request, bytes):
        text = repr(request)
    else:
        text = text_format.MessageToString(request, as_one_line=True) or "(empty)"
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


# -- sending -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    index: int
    rpc: str
    code: grpc.StatusCode
    details: str
    seconds: float


def call(channel: grpc.Channel, method: MethodDescriptor, payload: bytes, deadline: float) -> Any:
    """One call with identity serializers; a server stream is read to its end (within the
    deadline, which bounds the whole call). The status code and details."""
    path = method_path(method)
    try:
        if method.server_streaming:
            for _ in channel.unary_stream(path)(payload, timeout=deadline):
                pass
        else:
            channel.unary_unary(path)(payload, timeout=deadline)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def send_all(
    channels: Sequence[grpc.Channel],
    requests: Sequence[Request],
    callers: int,
    deadline: float,
    offset: int = 0,
) -> list[Outcome]:
    """Every request once, `callers` threads taking the next request in turn."""
    position = iter(range(len(requests)))
    lock = threading.Lock()

    def caller(number: int) -> list[Outcome]:
        channel = channels[number % len(channels)]
        outcomes: list[Outcome] = []
        clock = time.perf_counter
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                return outcomes
            method, request = requests[index]
            payload = request if isinstance(request, bytes) else request.SerializeToString()
            start = clock()
            code, details = call(channel, method, payload, deadline)
            outcomes.append(Outcome(offset + index, method.name, code, details, clock() - start))

    with ThreadPoolExecutor(callers, thread_name_prefix="fuzz") as pool:
        results = list(pool.map(caller, range(callers)))
    return sorted((o for part in results for o in part), key=lambda o: o.index)


# -- the server process ------------------------------------------------------------------------


def memory(pid: int) -> Memory:
    sizes = [vm_rss(p) for p in {pid, *descendants(pid)}]
    known = [s for s in sizes if s is not None]
    return Memory(vm_rss(pid), sum(known) if known else None)


def log_lines(server: ServerProcess) -> list[str]:
    """The server's log lines but its access lines (one per call, by design)."""
    try:
        lines = server.log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if '"name": "planner.access"' not in line]


def incident_log(lines: list[str], details: str, limit: int = 40) -> str:
    """The server's log lines for the incident id an INTERNAL's details name, if any."""
    found = re.search(r"incident ([0-9a-f]+)", details)
    if not found:
        return ""
    for number, line in enumerate(lines):
        if found.group(1) in line:
            return "\n".join(lines[number : number + limit])
    return ""


def health(channel: grpc.Channel) -> str:
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10.0
        )
    except grpc.RpcError as error:
        return f"no answer ({error.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


# -- the run -----------------------------------------------------------------------------------


def run(quick: bool) -> FuzzBench:
    fuzz_settings = FuzzSettings.for_mode(quick)
    methods = fuzzed_methods()
    log(f"fuzz: drawing {fuzz_settings.requests:,} requests over {len(methods)} RPCs")
    began = time.monotonic()
    requests = draw_requests(fuzz_settings.requests)
    draw_seconds = time.monotonic() - began
    garbage = undecodable_payloads(fuzz_settings.undecodable, methods)
    log(f"fuzz: drew {len(requests):,} in {draw_seconds:.1f} s; starting planner-server")
    with tempfile.TemporaryDirectory(prefix="planner-fuzz-") as scratch:
        server = ServerProcess(Path(scratch) / "fuzz.db", solver_processes=None)
        with server:
            channels = [grpc.insecure_channel(server.target) for _ in range(fuzz_settings.channels)]
            try:
                seed_family(channels[0])
                samples = [("after seeding", memory(server.pid))]
                lines_before = len(log_lines(server))
                half = len(requests) // 2
                log(
                    f"fuzz: {len(requests):,} requests, {fuzz_settings.callers} callers on "
                    f"{fuzz_settings.channels} channels, deadline {fuzz_settings.deadline:g} s"
                )
                start = time.perf_counter()
                outcomes: list[Outcome] = []
                for label, offset, part in (
                    ("after half the requests", 0, requests[:half]),
                    ("after all the requests", half, requests[half:]),
                ):
                    outcomes += send_all(
                        channels, part, fuzz_settings.callers, fuzz_settings.deadline, offset
                    )
                    samples.append((label, memory(server.pid)))
                    log(f"fuzz: {len(outcomes):,} answered; server RSS {samples[-1][1].server}")
                seconds = time.perf_counter() - start
                lines_between = len(log_lines(server))
                log(f"fuzz: {len(garbage)} undecodable byte strings")
                raw = send_all(channels, garbage, fuzz_settings.callers, fuzz_settings.deadline)
                health_after = health(channels[0])
                samples.append(("after the undecodable bytes", memory(server.pid)))
                time.sleep(0.2)  # let the last log lines reach the file
                lines = log_lines(server)
            finally:
                for channel in channels:
                    channel.close()
    forbidden = [o for o in outcomes if o.code in FORBIDDEN]
    forbidden_raw = [o for o in raw if o.code in FORBIDDEN]
    kept = [
        Forbidden(
            o.rpc,
            o.code.name,
            shown(requests[o.index][1]),
            o.details,
            incident_log(lines, o.details),
        )
        for o in forbidden[:KEPT_FORBIDDEN]
    ] + [
        Forbidden(
            o.rpc,
            o.code.name,
            shown(garbage[o.index][1]),
            o.details,
            incident_log(lines, o.details),
        )
        for o in forbidden_raw[:KEPT_FORBIDDEN]
    ]
    by_rpc: dict[str, Counter[str]] = {method.name: Counter() for method in methods}
    for outcome in outcomes:
        by_rpc[outcome.rpc][outcome.code.name] += 1
    notes = []
    if len(requests) < fuzz_settings.requests:
        notes.append(f"hypothesis drew only {len(requests):,} distinct requests")
    result = FuzzBench(
        settings=fuzz_settings,
        rpcs=len(methods),
        requests=len(outcomes),
        seconds=seconds,
        draw_seconds=draw_seconds,
        latency=summarize([o.seconds for o in outcomes]),
        slowest=[
            (o.rpc, o.seconds, shown(requests[o.index][1]))
            for o in sorted(outcomes, key=lambda o: o.seconds, reverse=True)[:KEPT_SLOWEST]
        ],
        codes=dict(Counter(o.code.name for o in outcomes).most_common()),
        by_rpc={name: dict(codes.most_common()) for name, codes in by_rpc.items()},
        forbidden_count=len(forbidden) + len(forbidden_raw),
        forbidden=kept,
        undecodable_sent=len(raw),
        undecodable_codes=dict(Counter(o.code.name for o in raw).most_common()),
        undecodable_refused=sum(
            1
            for o in raw
            if o.code == grpc.StatusCode.INVALID_ARGUMENT and UNDECODABLE in o.details
        ),
        undecodable_log_lines=len(lines) - lines_between,
        fuzz_log_lines=lines_between - lines_before,
        fuzz_log_sample=[line[:SHOWN_CHARS] for line in lines[lines_before:lines_between]][
            :KEPT_LOG_LINES
        ],
        tracebacks=sum(1 for line in lines if "Traceback" in line),  # JSON lines hold them
        memory=samples,
        health_after=health_after,
        server_exit_code=server.exit_code,
        notes=notes,
    )
    log(
        f"fuzz: {result.requests:,} requests in {result.seconds:.1f} s ({result.rate:,.0f}/s); "
        f"codes {result.codes}; INTERNAL/UNKNOWN {result.forbidden_count}; health "
        f"{result.health_after}"
    )
    return result
