"""Bearer-token authentication; health and reflection stay open for probes and grpcurl."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def load_tokens(path: Path) -> frozenset[bytes]:
    """Accepted tokens (UTF-8), one per line; blank lines and '#' comments (indented or not)
    are skipped. ValueError, with the path, when the file is missing, unreadable or empty."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the tokens file {path}: {exc}") from exc
    stripped = (line.strip() for line in lines)
    tokens = frozenset(line.encode() for line in stripped if line and not line.startswith("#"))
    if not tokens:
        raise ValueError(f"the tokens file {path} holds no tokens")
    return tokens


def _deny(message: str) -> grpc.RpcMethodHandler:
    async def deny(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(deny)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Rejects calls without `authorization: Bearer <token>` for a known token."""

    def __init__(self, tokens: frozenset[bytes]) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method.startswith(OPEN_PREFIXES):
            return await continuation(handler_call_details)
        header = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        scheme, _, token = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _deny("missing 'authorization: Bearer <token>' metadata")
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError per call).
        offered = token.encode("utf-8", "surrogateescape")
        if not any(hmac.compare_digest(offered, known) for known in self._tokens):
            return _deny("unknown token")
        return await continuation(handler_call_details)
