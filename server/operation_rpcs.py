"""Long-running operations: fits and backtests that outlive their caller (AIP-151)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from planner.errors import InvalidInput
from planner_api.v1 import planner_pb2 as pb
from server import mapping, validation
from server.errors import translate_errors, translate_stream_errors
from server.fitting_rpcs import FittingRpcs
from server.operations import ReportProgress, Work
from server.rpc_base import Context
from server.store import NotFound
from server.store.records import SUCCEEDED, OperationRecord

_NAME = re.compile(r"operations/([0-9a-f]{32})")
MAX_OPERATIONS_PAGE = 1000


def operation_id(field: str, name: str) -> str:
    match = _NAME.fullmatch(name)
    if match is None:
        raise InvalidInput(field, f"must be operations/<32 hex digits>, got {name[:80]!r}")
    return match.group(1)


class OperationRpcs(FittingRpcs):
    """StartFit, StartBacktest, GetOperation, ListOperations, CancelOperation, WatchOperation."""

    @translate_errors
    async def StartFit(self, request: pb.FitLawRequest, context: Context) -> pb.Operation:
        prepared = await self._prepare_fit(request)
        record = await self.operations.start(
            "fit", prepared.family, request.SerializeToString(), prepared.work(self)
        )
        return await self._operation_message(record)

    @translate_errors
    async def StartBacktest(self, request: pb.BacktestLawRequest, context: Context) -> pb.Operation:
        prepared = await self._prepare_backtest(request)
        record = await self.operations.start(
            "backtest", prepared.family, request.SerializeToString(), prepared.work(self)
        )
        return await self._operation_message(record)

    def rebuild_fit(self, record: OperationRecord) -> Work:
        """The work of a stored fit operation, loaded afresh (to resume it after a restart)."""

        async def run(operation_id: str, report: ReportProgress) -> bytes | None:
            prepared = await self._prepare_fit(pb.FitLawRequest.FromString(record.request))
            return await prepared.work(self)(operation_id, report)

        return run

    def rebuild_backtest(self, record: OperationRecord) -> Work:
        async def run(operation_id: str, report: ReportProgress) -> bytes | None:
            request = pb.BacktestLawRequest.FromString(record.request)
            prepared = await self._prepare_backtest(request)
            return await prepared.work(self)(operation_id, report)

        return run

    @translate_errors
    async def GetOperation(self, request: pb.GetOperationRequest, context: Context) -> pb.Operation:
        record = await self._operation_record("name", request.name)
        return await self._operation_message(record)

    @translate_errors
    async def ListOperations(
        self, request: pb.ListOperationsRequest, context: Context
    ) -> pb.ListOperationsResponse:
        family = validation.family_name("family", request.family) if request.family else None
        size = validation.page_size("page_size", request.page_size, 100, MAX_OPERATIONS_PAGE)
        before = _decode_position(request.page_token)
        records = await asyncio.to_thread(self.store.list_operations, family, size + 1, before)
        response = pb.ListOperationsResponse()
        for record in records[:size]:
            response.operations.append(await self._operation_message(record))
        if len(records) > size:
            last = records[size - 1]
            response.next_page_token = validation.encode_page_pair(repr(last.created_at), last.id)
        return response

    @translate_errors
    async def CancelOperation(
        self, request: pb.CancelOperationRequest, context: Context
    ) -> pb.Operation:
        record = await self._operation_record("name", request.name)
        if not record.done:
            record = await self.operations.cancel(record.id, "cancelled by CancelOperation")
        return await self._operation_message(record)

    @translate_stream_errors
    async def WatchOperation(
        self, request: pb.WatchOperationRequest, context: Context
    ) -> AsyncIterator[pb.Operation]:
        record = await self._operation_record("name", request.name)
        last: pb.Operation | None = None
        async for _ in self.operations.watch(record.id):
            record = await asyncio.to_thread(self.store.get_operation, record.id)
            message = await self._operation_message(record)
            if message != last:
                yield message
                last = message
            if record.done:
                return

    async def _operation_record(self, field: str, name: str) -> OperationRecord:
        return await asyncio.to_thread(self.store.get_operation, operation_id(field, name))

    async def _operation_message(self, record: OperationRecord) -> pb.Operation:
        message = pb.Operation(
            name=f"operations/{record.id}",
            kind=record.kind,
            family=record.family,
            state=getattr(pb, f"OPERATION_STATE_{record.state}"),
            done=record.done,
            progress=pb.FitProgress(
                stage=record.progress_stage,
                done=record.progress_done,
                total=record.progress_total,
            ),
            create_time=mapping.timestamp(record.created_at),
            update_time=mapping.timestamp(record.updated_at),
            attempt=record.attempt,
        )
        live = self.operations.live(record.id)
        if live is not None and not record.done:  # fresher than the store's copy
            progress = live.progress
            message.progress.CopyFrom(
                pb.FitProgress(stage=progress.stage, done=progress.done, total=progress.total)
            )
        if record.state == SUCCEEDED and record.law_form and record.law_version:
            try:
                law = await asyncio.to_thread(
                    self.store.get_law, record.family, (record.law_form,), record.law_version
                )
                message.law.CopyFrom(mapping.law_message(law))
            except NotFound:  # the family was deleted since; the operation's record stays
                pass
        elif record.state == SUCCEEDED and record.result is not None:
            message.backtest.ParseFromString(record.result)
        elif record.error_code is not None:
            message.error.CopyFrom(
                pb.OperationError(code=record.error_code, message=record.error_message or "")
            )
        return message


def _decode_position(token: str) -> tuple[float, str] | None:
    """(created_at, id) of the last operation of the previous page."""
    pair = validation.decode_page_pair("page_token", token)
    if pair is None:
        return None
    created, identifier = pair
    try:
        return float(created), operation_id("page_token", f"operations/{identifier}")
    except ValueError as exc:
        raise InvalidInput("page_token", "is not a token this service issued") from exc
