"""Families, runs and stored laws: validate, call the store (in a thread), map back."""

from __future__ import annotations

import asyncio

from planner.errors import InvalidInput
from planner.forms import law_form, law_mapping, parse_any_law
from planner_api.v1 import planner_pb2 as pb
from server import mapping, validation
from server.errors import translate_errors
from server.rpc_base import Context, RpcBase, optional_field


class CatalogRpcs(RpcBase):
    """CreateFamily ... ListRuns, PutLaw, GetLaw, ListLawVersions."""

    # -- families -----------------------------------------------------------------------------

    @translate_errors
    async def CreateFamily(
        self, request: pb.CreateFamilyRequest, context: Context
    ) -> pb.CreateFamilyResponse:
        family = request.family
        name = validation.family_name("family.name", family.name)
        text = validation.description("family.description", family.description)
        conv = validation.convention("family.param_convention", family.param_convention)
        k = validation.flops_per_param_token(
            "family.flops_per_param_token", family.flops_per_param_token
        )
        metric = validation.metric("family.metric", family.metric)
        record = await asyncio.to_thread(self.store.create_family, name, text, conv, k, metric)
        self.laws.invalidate(name)
        return pb.CreateFamilyResponse(family=mapping.family_message(record))

    @translate_errors
    async def GetFamily(
        self, request: pb.GetFamilyRequest, context: Context
    ) -> pb.GetFamilyResponse:
        name = validation.family_name("name", request.name)
        record = await asyncio.to_thread(self.store.get_family, name)
        return pb.GetFamilyResponse(family=mapping.family_message(record))

    @translate_errors
    async def ListFamilies(
        self, request: pb.ListFamiliesRequest, context: Context
    ) -> pb.ListFamiliesResponse:
        size = validation.page_size("page_size", request.page_size, 100, 1000)
        after = validation.decode_page_token("page_token", request.page_token)
        if after is not None and not isinstance(after, str):
            raise InvalidInput("page_token", "is not a token of ListFamilies")
        records = await asyncio.to_thread(self.store.list_families, size + 1, after)
        more = len(records) > size
        records = records[:size]
        token = validation.encode_page_token(records[-1].name) if more else ""
        return pb.ListFamiliesResponse(
            families=[mapping.family_message(r) for r in records], next_page_token=token
        )

    @translate_errors
    async def DeleteFamily(
        self, request: pb.DeleteFamilyRequest, context: Context
    ) -> pb.DeleteFamilyResponse:
        name = validation.family_name("name", request.name)
        expected = optional_field(request, "expected_revision")
        try:
            await asyncio.to_thread(self.store.delete_family, name, expected)
        finally:
            self.laws.invalidate(name)
        return pb.DeleteFamilyResponse()

    # -- runs ---------------------------------------------------------------------------------

    @translate_errors
    async def AddRuns(self, request: pb.AddRunsRequest, context: Context) -> pb.AddRunsResponse:
        name = validation.family_name("family", request.family)
        records = validation.runs_batch("runs", list(request.runs), self.max_runs)
        expected = optional_field(request, "expected_revision")
        added, unchanged, family = await asyncio.to_thread(
            self.store.add_runs, name, records, expected
        )
        return pb.AddRunsResponse(
            added=added,
            unchanged=unchanged + len(request.runs) - len(records),
            family=mapping.family_message(family),
        )

    @translate_errors
    async def DeleteRuns(
        self, request: pb.DeleteRunsRequest, context: Context
    ) -> pb.DeleteRunsResponse:
        name = validation.family_name("family", request.family)
        run_ids = validation.run_ids("run_ids", list(request.run_ids))
        expected = optional_field(request, "expected_revision")
        try:
            deleted, family = await asyncio.to_thread(
                self.store.delete_runs, name, run_ids, expected
            )
        finally:
            self.laws.invalidate(name)
        return pb.DeleteRunsResponse(deleted=deleted, family=mapping.family_message(family))

    @translate_errors
    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        name = validation.family_name("family", request.family)
        size = validation.page_size("page_size", request.page_size, 1000, 10_000)
        after = validation.decode_page_token("page_token", request.page_token) or 0
        if not isinstance(after, int):
            raise InvalidInput("page_token", "is not a token of ListRuns")
        # The answer is built in the thread too: 10,000 run messages would hold the event loop
        # (and every other call, health included) for tens of milliseconds.
        return await asyncio.to_thread(self._runs_page, name, size, after)

    def _runs_page(self, name: str, size: int, after: int) -> pb.ListRunsResponse:
        rows = self.store.list_runs(name, size + 1, after)
        page = rows[:size]
        token = validation.encode_page_token(page[-1][0]) if len(rows) > size else ""
        return pb.ListRunsResponse(
            runs=[mapping.run_message(run) for _, run in page], next_page_token=token
        )

    # -- laws ---------------------------------------------------------------------------------

    @translate_errors
    async def PutLaw(self, request: pb.PutLawRequest, context: Context) -> pb.PutLawResponse:
        name = validation.family_name("family", request.family)
        values = validation.law_parameters("parameters", dict(request.parameters))
        law = parse_any_law(request.form, values)
        source = request.source
        method = validation.text("source.method", source.method, validation.MAX_METHOD)
        method = method or "published"
        validation.text("source.citation", source.citation, validation.MAX_SOURCE_TEXT)
        validation.text("source.note", source.note, validation.MAX_SOURCE_TEXT)
        record = await asyncio.to_thread(
            self.store.put_law,
            name,
            law_form(law),
            law_mapping(law),
            method,
            source.citation,
            source.note,
            optional_field(request, "expected_revision"),
        )
        self.laws.invalidate(name)
        return pb.PutLawResponse(law=mapping.law_message(record))

    @translate_errors
    async def GetLaw(self, request: pb.GetLawRequest, context: Context) -> pb.GetLawResponse:
        selector = pb.LawSelector(family=request.family, form=request.form, version=request.version)
        record = await asyncio.to_thread(self._law_record, selector, "", None)
        return pb.GetLawResponse(law=mapping.law_message(record))

    @translate_errors
    async def SetCurrentLaw(
        self, request: pb.SetCurrentLawRequest, context: Context
    ) -> pb.SetCurrentLawResponse:
        name = validation.family_name("family", request.family)
        validation.law_form("form", request.form)
        if request.version < 1:
            raise InvalidInput("version", f"must be >= 1, got {request.version}")
        try:
            record = await asyncio.to_thread(
                self.store.set_current_law,
                name,
                request.form,
                request.version,
                optional_field(request, "expected_revision"),
            )
        finally:
            self.laws.invalidate(name)
        return pb.SetCurrentLawResponse(law=mapping.law_message(record))

    @translate_errors
    async def ListLawVersions(
        self, request: pb.ListLawVersionsRequest, context: Context
    ) -> pb.ListLawVersionsResponse:
        name = validation.family_name("family", request.family)
        validation.law_form("form", request.form, optional=True)
        size = validation.page_size("page_size", request.page_size, 100, 1000)
        after = _version_position(request.page_token)
        records = await asyncio.to_thread(
            self.store.list_law_versions, name, request.form or None, size + 1, after
        )
        response = pb.ListLawVersionsResponse(laws=[mapping.law_message(r) for r in records[:size]])
        if len(records) > size:
            last = records[size - 1]
            response.next_page_token = validation.encode_page_pair(last.form, str(last.version))
        return response


def _version_position(token: str) -> tuple[str, int] | None:
    """(form, version) of the last version of the previous page."""
    pair = validation.decode_page_pair("page_token", token)
    if pair is None:
        return None
    form, version = pair
    if not version.isdigit() or len(version) > 9:
        raise InvalidInput("page_token", "is not a token this service issued")
    return form, int(version)
