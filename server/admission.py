"""A cap on the planner calls served at once, counted until each call's answer is sent; and
each call's method, status, duration and caller (its token's name, from the auth interceptor),
reported when it ends (the metrics and the access log).

grpc.aio's own `maximum_concurrent_rpcs` counts health checks too: clients that never read their
answers held every slot and health probes were refused with the rest. This interceptor counts
only planner calls, from admission until the call terminates (its answer fully sent, or the call
cancelled), so what unread answers can hold is bounded and health and reflection always answer.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from server.auth import OPEN_PREFIXES, caller_name
from server.errors import abort
from server.logs import REQUEST_ID, REQUEST_ID_KEY

# Seconds a refused caller is told to wait (google.rpc.RetryInfo).
RETRY_AFTER = 1.0
# Told of each planner call once it ended: (method, status code name, seconds, request id,
# peer, token name ("" without one)).
CallObserver = Callable[[str, str, float, str, str, str], None]
# A caller's x-request-id is kept when it is this short and printable; else one is made.
MAX_REQUEST_ID = 128


class AdmissionInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses planner calls with RESOURCE_EXHAUSTED while `limit` are in flight."""

    def __init__(self, limit: int, observer: CallObserver | None = None) -> None:
        self.limit = limit
        self.in_flight = 0
        self.observer = observer
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        # The service hands out one handler per method: wrap it once, not on every call.
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method.rsplit("/", 1)[-1], handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, name: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(name, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._streaming(name, handler.unary_stream))
        return handler  # the service has no client-streaming calls

    async def _admit(self, method: str, context: Any) -> None:
        started = time.perf_counter()
        request_id = _request_id(context)
        # Read here, in the call's own task where the auth interceptor set it; the done
        # callback below may run elsewhere.
        token_name = caller_name()
        # Returned to the caller, so its logs and ours can be joined: in the trailing metadata,
        # which goes out with the status; sending initial metadata early cost an extra write,
        # about 130 µs per call.
        REQUEST_ID.set(request_id)
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        if self.in_flight >= self.limit:
            self._observe(method, "RESOURCE_EXHAUSTED", started, request_id, token_name, context)
            await abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.in_flight} calls are in flight on this server (PLANNER_MAX_CONCURRENT_RPCS"
                f" = {self.limit}, counted until each answer is sent); retry shortly",
                retry_after=RETRY_AFTER,
            )
        self.in_flight += 1

        def release(ended: Any) -> None:
            self.in_flight -= 1
            code = ended.code()
            if ended.cancelled():
                name = "CANCELLED"
            else:
                name = "OK" if code is None else getattr(code, "name", str(code))
            self._observe(method, name, started, request_id, token_name, ended)

        context.add_done_callback(release)

    def _observe(
        self,
        method: str,
        code: str,
        started: float,
        request_id: str,
        token_name: str,
        context: Any,
    ) -> None:
        if self.observer is not None:
            seconds = time.perf_counter() - started
            self.observer(method, code, seconds, request_id, str(context.peer()), token_name)

    def _unary(
        self, method: str, behavior: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def admitted(request: Any, context: Any) -> Any:
            await self._admit(method, context)
            return await behavior(request, context)

        return admitted

    def _streaming(
        self, method: str, behavior: Callable[[Any, Any], AsyncIterator[Any]]
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def admitted(request: Any, context: Any) -> AsyncIterator[Any]:
            await self._admit(method, context)
            async for item in behavior(request, context):
                yield item

        return admitted


def _request_id(context: Any) -> str:
    """The caller's x-request-id when sane, else a new one."""
    for key, value in context.invocation_metadata() or ():
        sane = isinstance(value, str) and 0 < len(value) <= MAX_REQUEST_ID and value.isprintable()
        if key == REQUEST_ID_KEY and sane:
            return str(value)
    return os.urandom(16).hex()  # as random as uuid4().hex, in a quarter of the time
