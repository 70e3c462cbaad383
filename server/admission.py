"""A cap on the planner calls served at once, counted until each call's answer is sent; and
each call's method, status and duration, reported when it ends (the metrics).

grpc.aio's own `maximum_concurrent_rpcs` counts health checks too: clients that never read their
answers held every slot and health probes were refused with the rest. This interceptor counts
only planner calls, from admission until the call terminates (its answer fully sent, or the call
cancelled), so what unread answers can hold is bounded and health and reflection always answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from server.auth import OPEN_PREFIXES
from server.errors import abort

# Seconds a refused caller is told to wait (google.rpc.RetryInfo).
RETRY_AFTER = 1.0
# Told of each planner call once it ended: (method, status code name, seconds).
CallObserver = Callable[[str, str, float], None]


class AdmissionInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses planner calls with RESOURCE_EXHAUSTED while `limit` are in flight."""

    def __init__(self, limit: int, observer: CallObserver | None = None) -> None:
        self.limit = limit
        self.in_flight = 0
        self.observer = observer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        name = method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(name, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._streaming(name, handler.unary_stream))
        return handler  # the service has no client-streaming calls

    async def _admit(self, method: str, context: Any) -> None:
        started = time.perf_counter()
        if self.in_flight >= self.limit:
            self._observe(method, "RESOURCE_EXHAUSTED", started)
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
            self._observe(method, name, started)

        context.add_done_callback(release)

    def _observe(self, method: str, code: str, started: float) -> None:
        if self.observer is not None:
            self.observer(method, code, time.perf_counter() - started)

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
