"""Talks to the planner service: a typed Python client and the `planner` CLI."""

from clients.client import PlannerClient, PlannerClientError

__all__ = ["PlannerClient", "PlannerClientError"]
