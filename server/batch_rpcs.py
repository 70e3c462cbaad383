"""Batch queries for schedulers: many plans or predictions from one law in one call."""

from __future__ import annotations

from server.rpc_base import RpcBase


class BatchRpcs(RpcBase):
    """PlanComputeOptimalBatch, PredictBatch."""
