"""Long-running operations: fits and backtests that outlive their caller."""

from __future__ import annotations

from server.rpc_base import RpcBase


class OperationRpcs(RpcBase):
    """StartFit, StartBacktest, GetOperation, ListOperations, CancelOperation, WatchOperation."""
