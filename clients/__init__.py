"""Talks to the planner service: a typed Python client and the `planner` CLI."""

from clients.client import OperationFailed, PlannerClient, PlannerClientError

__all__ = ["OperationFailed", "PlannerClient", "PlannerClientError"]
