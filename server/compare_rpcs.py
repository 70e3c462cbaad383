"""CompareLaws: two recipes' laws on one axis of compute (planner.compare_recipes does the work
off the event loop: about 1 ms without bands; bands invert each paired row's curve at every
budget, about 0.1 ms each, so 200 rows x 100 budgets take ~2 s and go to the fit processes,
leaving the solver processes to sub-second work)."""

from __future__ import annotations

from planner.compare_recipes import BAND_ROWS, ComparisonQuery, Recipe, compare
from planner.errors import Infeasible, InvalidInput
from planner_api.v1 import planner_pb2 as pb
from server import mapping, validation
from server.errors import translate_errors
from server.law_cache import ResolvedLaw
from server.rpc_base import Context, RpcBase, optional_field
from server.store import StoreError

LAW_PREFIX = "law."
# Row-by-budget inversions (about 0.1 ms each) beyond which a comparison is long work.
LONG_BAND_WORK = 5000


class CompareRpcs(RpcBase):
    """CompareLaws."""

    async def _resolve_named(self, selector: pb.LawSelector, name: str) -> ResolvedLaw:
        """_resolve, with errors naming the request's field (`first`/`second`), not `law`."""
        validation.family_name(f"{name}.family", selector.family)
        validation.law_form(f"{name}.form", selector.form, optional=True)
        if selector.version < 0:
            raise InvalidInput(f"{name}.version", f"must be >= 0, got {selector.version}")
        try:
            return await self._resolve(selector)
        except StoreError as error:
            if error.field is not None and error.field.startswith(LAW_PREFIX):
                error.field = f"{name}.{error.field.removeprefix(LAW_PREFIX)}"
            raise

    @translate_errors
    async def CompareLaws(
        self, request: pb.CompareLawsRequest, context: Context
    ) -> pb.CompareLawsResponse:
        query = ComparisonQuery(
            path=request.path,
            multiplier=optional_field(request, "multiplier"),
            axis=request.axis,
            first_flops_per_accelerator_second=optional_field(
                request, "first_flops_per_accelerator_second"
            ),
            second_flops_per_accelerator_second=optional_field(
                request, "second_flops_per_accelerator_second"
            ),
            low=optional_field(request, "low"),
            high=optional_field(request, "high"),
            budgets=tuple(request.budgets),
            points=request.points,
        ).validated()  # bad input is refused before any law is loaded
        first = await self._resolve_named(request.first, "first")
        second = await self._resolve_named(request.second, "second")
        if first.metric and second.metric and first.metric != second.metric:
            raise Infeasible(
                f"the two families measure different things: {first.record.family!r} reports "
                f"{first.metric!r}, {second.record.family!r} reports {second.metric!r}; "
                "losses on different metrics cannot be compared",
                field="second.family",
            )
        pool = self.fit_pool if _band_work(first, second, query) > LONG_BAND_WORK else self.pool
        async with self._default_deadline(context):
            result = await pool.run(compare, _recipe(first), _recipe(second), query)
        response = pb.CompareLawsResponse(
            crossovers=result.crossovers,
            ranges=[
                pb.WinnerRange(low=s.low, high=s.high, winner=s.winner) for s in result.stretches
            ],
            first_law=_summary(first),
            second_law=_summary(second),
            axis_values=result.axis_values,
            first_loss=result.first_curve,
            second_loss=result.second_curve,
        )
        for budget, loss, multiplier, band in zip(
            query.budgets, result.first_losses, result.multipliers, result.bands, strict=True
        ):
            answer = response.multipliers.add(budget=budget, first_loss=loss, multiplier=multiplier)
            if band is not None:
                answer.interval.CopyFrom(pb.Interval(low=band[0], median=band[1], high=band[2]))
        return response


def _band_work(first: ResolvedLaw, second: ResolvedLaw, query: ComparisonQuery) -> int:
    if first.ensemble is None or second.ensemble is None:
        return 0
    rows = min(len(first.ensemble), len(second.ensemble), BAND_ROWS)
    return rows * len(query.budgets)


def _recipe(resolved: ResolvedLaw) -> Recipe:
    return Recipe(
        resolved.law,
        resolved.flops_per_param_token,
        resolved.ensemble,
        resolved.chinchilla_ensemble,
    )


def _summary(resolved: ResolvedLaw) -> pb.LawSummary:
    summary = mapping.law_summary(resolved.record)
    summary.family = resolved.record.family
    return summary
