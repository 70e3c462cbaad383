"""Turn domain and store errors into gRPC statuses with google.rpc.BadRequest details."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from sqlalchemy import exc as sa_exc

from planner.errors import Infeasible, InvalidInput, PlannerError, SolverFailed, Unsupported
from server.decoding import REFUSED, Undecodable
from server.logs import REQUEST_ID, REQUEST_ID_KEY
from server.refusals import Refused
from server.solver_pool import SolverPoolUnavailable
from server.store.errors import AlreadyExists, Conflict, NotFound, StoreError

log = logging.getLogger(__name__)

_CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (Infeasible, grpc.StatusCode.FAILED_PRECONDITION),
    # A solver that cannot certify an answer is a property of this request, not a server fault.
    (SolverFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (Unsupported, grpc.StatusCode.UNIMPLEMENTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (Conflict, grpc.StatusCode.ABORTED),
]


def status_for(error: PlannerError | StoreError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


@dataclass(frozen=True)
class Failure:
    """The status an error deserves: code, message, the field it names, retry hint."""

    code: grpc.StatusCode
    message: str
    field: str | None = None
    reason: str | None = None
    retry_after: float | None = None


def failure_of(error: Exception, handler_name: str) -> Failure:
    """The status `error` deserves; unexpected errors are logged and INTERNAL."""
    if isinstance(error, (PlannerError, StoreError)):
        reason = error.reason if isinstance(error, InvalidInput) else None
        return Failure(status_for(error), error.message, error.field, reason)
    if isinstance(error, Refused):
        return Failure(error.code, error.message, retry_after=error.retry_after)
    if isinstance(error, SolverPoolUnavailable):
        return Failure(grpc.StatusCode.UNAVAILABLE, str(error))
    if isinstance(error, sa_exc.OperationalError):
        # SQLite's "database is locked" after the busy timeout, a lost connection: the call
        # changed nothing (its transaction rolled back) and may be retried.
        log.warning("database unavailable in %s: %s", handler_name, error.orig)
        return Failure(
            grpc.StatusCode.UNAVAILABLE,
            f"the database is unavailable or busy ({error.orig}); nothing was changed, retry",
        )
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected error in %s (incident %s)", handler_name, incident, exc_info=error)
    return Failure(grpc.StatusCode.INTERNAL, f"internal error; incident {incident} is logged")


async def abort(
    context: Any,
    code: grpc.StatusCode,
    message: str,
    field: str | None = None,
    reason: str | None = None,
    retry_after: float | None = None,
) -> NoReturn:
    """Abort the call with `code`, attaching a BadRequest field violation when a field is named
    and a RetryInfo when a retry delay is known."""
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    if field is not None:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=field, description=reason or message
                    )
                ]
            )
        )
        status.details.append(detail)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
    trailing: tuple[tuple[str, str | bytes], ...] = (
        ("grpc-status-details-bin", status.SerializeToString()),
    )
    if request_id := REQUEST_ID.get():
        # abort replaces the trailing metadata set on admission; keep the request id in it.
        trailing += ((REQUEST_ID_KEY, request_id),)
    await context.abort(code, message, trailing_metadata=trailing)
    raise AssertionError("context.abort returned")  # pragma: no cover


async def abort_for(context: Any, error: Exception, handler_name: str) -> NoReturn:
    """Abort with the status `error` deserves (failure_of)."""
    failure = failure_of(error, handler_name)
    await abort(
        context, failure.code, failure.message, failure.field, failure.reason, failure.retry_after
    )


async def refuse_undecodable(context: Any, request: Undecodable) -> NoReturn:
    REFUSED.add(f"{request.message_type}: {request.reason}")
    await abort(
        context,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request is not a valid {request.message_type} message: {request.reason}",
    )


Request = TypeVar("Request")
Response = TypeVar("Response")
# grpc ships no type information: the servicer and its aio context are typed as Any.
Handler = Callable[[Any, Request, Any], Awaitable[Response]]


def translate_errors(handler: Handler[Request, Response]) -> Handler[Request, Response]:
    """Wrap an RPC handler: expected errors get their status, anything else a logged INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: Any) -> Response:
        if isinstance(request, Undecodable):
            await refuse_undecodable(context, request)
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_for(context, error, handler.__name__)

    return wrapper


def translate_stream_errors(
    handler: Callable[[Any, Request, Any], AsyncIterator[Response]],
) -> Callable[[Any, Request, Any], AsyncIterator[Response]]:
    """translate_errors for server-streaming handlers (async generators)."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: Any) -> AsyncIterator[Response]:
        if isinstance(request, Undecodable):
            await refuse_undecodable(context, request)
        try:
            async for item in handler(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_for(context, error, handler.__name__)

    return wrapper
