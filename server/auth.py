"""Bearer-token authentication with roles; health and reflection stay open for probes and grpcurl.

The tokens file is JSON, `{"tokens": [{"name": ..., "sha256": ..., "role": ...}]}`, holding only
hashes of the tokens; the older file of plain tokens, one per line, still works and gives each
token the role `admin`. Roles nest: `read` (queries, gets, lists), `write` (also families, runs,
laws, fits), `admin` (also deletes). A token that is missing or unknown is UNAUTHENTICATED; a
known token whose role is too low is PERMISSION_DENIED.

The interceptor records who made each call it admits in `CALLER`, a context variable: grpc.aio
runs a call's interceptors and its handler in one task, so the admission interceptor (which
writes the access line) reads the caller's token name there without the token travelling on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import grpc

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
ROLES = ("read", "write", "admin")  # each includes the ones before it
SERVICE_PREFIX = "/planner.v1.PlannerService/"

WRITES = frozenset(
    {
        "CreateFamily", "AddRuns", "PutLaw", "FitLaw", "SetCurrentLaw", "StartFit",
        "StartBacktest", "CancelOperation",
    }
)  # fmt: skip
ADMIN = frozenset({"DeleteFamily", "DeleteRuns"})
READS = frozenset(
    {
        "GetFamily", "ListFamilies", "ListRuns", "BacktestLaw", "FitIsoFLOP", "FitBrokenPowerLaw",
        "GetLaw", "ListLawVersions", "Predict", "PlanComputeOptimal", "PlanInference",
        "PlanOvertraining", "PlanDataMix", "PlanSparsity", "AllocateBudget", "GetOperation",
        "ListOperations", "WatchOperation", "PlanComputeOptimalBatch", "PredictBatch",
        "CompareLaws", "PredictCurve", "PlanSchedule", "PredictTask",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Principal:
    """Who a token is (its name, for logs) and what it may do."""

    name: str
    role: str


# The principal of the call being served in this task; None without a tokens file, or for an
# open read that carried no known token.
CALLER: ContextVar[Principal | None] = ContextVar("planner_caller", default=None)


def caller_name() -> str:
    """The token name of the call being served ("" when it has none)."""
    principal = CALLER.get()
    return principal.name if principal is not None else ""


def required_role(method: str) -> str:
    """The least role a full method path needs; methods not listed need admin (fail closed)."""
    name = method.removeprefix(SERVICE_PREFIX)
    if name in READS:
        return "read"
    if name in WRITES:
        return "write"
    return "admin"


def allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def load_tokens(path: Path) -> dict[str, Principal]:
    """sha256 hex digest -> principal. ValueError, with the path and the reason, when the file
    is missing, unreadable, empty or malformed."""
    text = _read_tokens_file(path)
    tokens = _json_tokens(path, text) if text.lstrip().startswith("{") else _plain_tokens(text)
    if not tokens:
        raise ValueError(f"the tokens file {path} holds no tokens")
    return tokens


def _read_tokens_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the tokens file {path}: {exc}") from exc


def _plain_tokens(text: str) -> dict[str, Principal]:
    """One token per line (blank lines and '#' comments, indented or not, skipped): admins."""
    stripped = (line.strip() for line in text.splitlines())
    plain = [line for line in stripped if line and not line.startswith("#")]
    return {digest(token): Principal(f"token-{i + 1}", "admin") for i, token in enumerate(plain)}


def hashed_tokens_json(path: Path) -> str:
    """A plain tokens file as the JSON form (the same names token-1.. and role admin that the
    server gives its lines), for replacing it with a file that holds no token. ValueError when
    the file cannot be read, holds no token or is JSON already."""
    text = _read_tokens_file(path)
    if text.lstrip().startswith("{"):
        raise ValueError(f"the tokens file {path} is JSON already")
    tokens = _plain_tokens(text)
    if not tokens:
        raise ValueError(f"the tokens file {path} holds no tokens")
    entries = [
        {"name": principal.name, "sha256": hashed, "role": principal.role}
        for hashed, principal in tokens.items()
    ]
    return json.dumps({"tokens": entries}, indent=2)


def _json_tokens(path: Path, text: str) -> dict[str, Principal]:
    try:
        entries = json.loads(text)["tokens"]
        if not isinstance(entries, list):
            raise TypeError("tokens is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        shape = '{"tokens": [...]}'
        raise ValueError(f"the tokens file {path} is not {shape} JSON: {exc}") from exc
    tokens: dict[str, Principal] = {}
    for i, entry in enumerate(entries):
        where = f"the tokens file {path}, tokens[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object with name, sha256 and role")
        name, hashed, role = entry.get("name"), entry.get("sha256"), entry.get("role")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: name must be a non-empty string")
        if not isinstance(hashed, str) or len(hashed) != 64:
            raise ValueError(f"{where}: sha256 must be 64 hex digits")
        try:
            bytes.fromhex(hashed)
        except ValueError as exc:
            raise ValueError(f"{where}: sha256 must be 64 hex digits") from exc
        if role not in ROLES:
            raise ValueError(f"{where}: role must be one of {list(ROLES)}, got {role!r}")
        tokens[hashed.lower()] = Principal(name, role)
    return tokens


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def deny(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(deny)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Admits calls by the role of their `authorization: Bearer <token>`; with `open_reads`,
    calls that need only `read` need no token."""

    def __init__(self, tokens: dict[str, Principal], open_reads: bool = False) -> None:
        self._tokens = tokens
        self._open_reads = open_reads

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        CALLER.set(None)  # this call's task starts with no caller known
        if method.startswith(OPEN_PREFIXES):
            return await continuation(handler_call_details)
        needed = required_role(method)
        header = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        scheme, _, token = str(header).partition(" ")
        presented = scheme.lower() == "bearer" and bool(token)
        principal = self._find(digest(token)) if presented else None
        # A known token names the caller in the access line, admitted or refused.
        CALLER.set(principal)
        if self._open_reads and needed == "read":
            # Open: admitted with or without a token.
            return await continuation(handler_call_details)
        if not presented:
            return _deny(
                grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata"
            )
        if principal is None:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        if not allows(principal.role, needed):
            return _deny(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token {principal.name!r} has role {principal.role!r}; "
                f"{method.removeprefix(SERVICE_PREFIX)} needs {needed!r}",
            )
        return await continuation(handler_call_details)

    def _find(self, hashed: str) -> Principal | None:
        # Compare every digest in constant time rather than a dict lookup's early exits.
        found = None
        for known, principal in self._tokens.items():
            if hmac.compare_digest(hashed, known):
                found = principal
        return found
