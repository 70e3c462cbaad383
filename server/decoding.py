"""Requests that do not decode as their message: INVALID_ARGUMENT and one log line a minute.

grpc answers a deserializer's exception with INTERNAL and logs a traceback per call, so a client
sending garbage fills the log. Here each method's deserializer returns an `Undecodable` marker
instead; the error wrappers (server.errors) refuse it with INVALID_ARGUMENT, and the log says
how many were refused, at most once per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from planner_api.v1 import planner_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
LOG_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes are not a valid message of the method's type."""

    message_type: str
    reason: str


class RateLimitedCount:
    """Counts events; logs one line with the count at most once per interval."""

    def __init__(self, what: str, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.what = what
        self.interval = interval
        self.pending = 0
        self.last = -float("inf")
        self.lock = threading.Lock()

    def add(self, detail: str) -> None:
        with self.lock:
            self.pending += 1
            now = time.monotonic()
            if now - self.last < self.interval:
                return
            count, self.pending, self.last = self.pending, 0, now
        log.warning(
            "%d %s in the last %.0f s (latest: %s)", count, self.what, self.interval, detail
        )


REFUSED = RateLimitedCount("undecodable requests refused with INVALID_ARGUMENT")


def _tolerant(decode: Callable[[bytes], Any], name: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as error:  # protobuf's DecodeError and whatever a parser raises
            return Undecodable(name, str(error) or type(error).__name__)

    return deserialize


class _Capture:
    """Takes the handlers the generated registration function builds."""

    name = ""
    handlers: dict[str, grpc.RpcMethodHandler] = {}  # noqa: RUF012 - replaced per instance

    def add_generic_rpc_handlers(self, _handlers: object) -> None:
        pass

    def add_registered_method_handlers(
        self, name: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.name, self.handlers = name, handlers


def add_service(servicer: pb_grpc.PlannerServiceServicer, server: grpc.aio.Server) -> None:
    """pb_grpc.add_PlannerServiceServicer_to_server, with tolerant request deserializers."""
    capture = _Capture()
    pb_grpc.add_PlannerServiceServicer_to_server(servicer, capture)
    handlers = {
        method: handler._replace(
            request_deserializer=_tolerant(handler.request_deserializer, method + " request")
        )
        for method, handler in capture.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.name, handlers),))
    server.add_registered_method_handlers(capture.name, handlers)
