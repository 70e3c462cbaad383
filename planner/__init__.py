"""Pure domain library of the compute-budget planner: scaling laws, fitting and planning.

Nothing here knows about gRPC or databases; every query the service answers is a plain function
in this package first.
"""

from planner.errors import Infeasible, InvalidInput, PlannerError, SolverFailed, Unsupported

__all__ = ["Infeasible", "InvalidInput", "PlannerError", "SolverFailed", "Unsupported"]
