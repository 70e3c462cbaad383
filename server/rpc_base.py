"""What every group of RPCs shares: the store, the solver pool, the law cache and law lookup."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import numpy as np

from planner.errors import InvalidInput
from planner.forms import ALL_FORMS, FORMS_OF_KIND, Kind, require_kind
from planner.laws import CurveOfOneVariable, parse_law
from planner.uncertainty import chinchilla_rows
from planner_api.v1 import planner_pb2 as pb
from server import validation
from server.batched_solver import BatchedSolver
from server.fit_pool import FitPool
from server.law_cache import LawCache, ResolvedLaw
from server.operations import OperationRunner
from server.refusals import deadline_passed
from server.solver_pool import SolverPool
from server.store import Store, StoreError
from server.store.records import LawRecord

# grpc ships no type information; handlers take its aio ServicerContext.
Context: TypeAlias = Any


def optional_field(message: Any, name: str) -> Any:
    """The field's value when the request sets it, else None."""
    return getattr(message, name) if message.HasField(name) else None


def with_form(selector: pb.LawSelector, form: str) -> pb.LawSelector:
    """A copy of the selector asking for `form`."""
    return pb.LawSelector(family=selector.family, form=form, version=selector.version)


class RpcBase:
    """State and law lookup shared by the RPC groups that make up PlannerService."""

    def __init__(
        self,
        store: Store,
        pool: SolverPool,
        max_runs_per_request: int,
        laws: LawCache,
        fit_pool: FitPool,
        operations: OperationRunner,
        default_deadline_seconds: float,
        max_runs_per_fit: int,
    ) -> None:
        self.store = store
        self.pool = pool  # plan workers: sub-second solves only
        self.fit_pool = fit_pool  # fits, backtests, bootstraps: long work, cancellable
        self.operations = operations
        self.max_runs = max_runs_per_request
        self.max_runs_per_fit = max_runs_per_fit
        self.laws = laws
        self.solver = BatchedSolver(pool)
        self.default_deadline = default_deadline_seconds

    @contextlib.asynccontextmanager
    async def _default_deadline(self, context: Context) -> AsyncIterator[None]:
        """Bound long work of a call without a deadline by the server's default; a caller's own
        deadline cancels the handler (and so its worker) when it passes."""
        if context.time_remaining() is not None:
            yield
            return
        try:
            async with asyncio.timeout(self.default_deadline):
                yield
        except TimeoutError as exc:
            raise deadline_passed(self.default_deadline) from exc

    def _law_record(
        self, selector: pb.LawSelector, prefix: str, kind: Kind | None = "final_loss"
    ) -> LawRecord:
        """The selected version; an empty form picks the family's first law of `kind` (of any
        kind when None)."""
        name = validation.family_name(f"{prefix}family", selector.family)
        validation.law_form(f"{prefix}form", selector.form, optional=True)
        if selector.version < 0:
            raise InvalidInput(f"{prefix}version", f"must be >= 0, got {selector.version}")
        if selector.form:
            forms: tuple[str, ...] = (selector.form,)
        else:
            forms = ALL_FORMS if kind is None else FORMS_OF_KIND[kind]
        try:
            return self.store.get_law(name, forms, selector.version)
        except StoreError as error:
            # The store names selector fields; the request nests them under `prefix`.
            if error.field is not None:
                error.field = prefix + error.field
            raise

    async def _resolve(self, selector: pb.LawSelector) -> ResolvedLaw:
        """The selected law, from the cache when fresh, else from the store (in a thread)."""
        key = (selector.family, selector.form, selector.version)
        cached = self.laws.get(key)
        if cached is not None:
            return cached
        generation = self.laws.generation(selector.family)
        resolved = await asyncio.to_thread(self._load_law, selector)
        self.laws.put(key, resolved, generation)
        return resolved

    def _load_law(self, selector: pb.LawSelector) -> ResolvedLaw:
        record = self._law_record(selector, "law.")
        require_kind(record.form, "final_loss", "This call")
        family = self.store.get_family(record.family)
        law = parse_law(record.form, record.parameters, "law.parameters")
        ensemble = chinchilla_ensemble = None
        if record.fit is not None and record.fit.ensemble:
            ensemble = np.asarray(record.fit.ensemble, dtype=np.float64)
            if not isinstance(law, CurveOfOneVariable):
                chinchilla_ensemble = chinchilla_rows(record.form, ensemble)
        return ResolvedLaw(
            record,
            law,
            family.flops_per_param_token,
            ensemble,
            chinchilla_ensemble,
            family.metric,
        )
