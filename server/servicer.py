"""PlannerService: the one service of planner.v1, assembled from its groups of RPCs.

Store calls run in threads (SQL is blocking I/O); closed forms run inline (microseconds); GP
solves and fits go to the warm process pool.
"""

from __future__ import annotations

from planner_api.v1 import planner_pb2_grpc as pb_grpc
from server.allocation_rpcs import AllocationRpcs
from server.batch_rpcs import BatchRpcs
from server.catalog_rpcs import CatalogRpcs
from server.compare_rpcs import CompareRpcs
from server.curve_rpcs import CurveRpcs
from server.operation_rpcs import OperationRpcs
from server.planning_rpcs import PlanningRpcs
from server.task_rpcs import TaskRpcs


class PlannerService(
    CatalogRpcs,
    OperationRpcs,  # with FittingRpcs, whose work its operations run
    PlanningRpcs,
    TaskRpcs,  # PredictTask; PlanningRpcs' target-accuracy plans build on it
    AllocationRpcs,
    BatchRpcs,
    CurveRpcs,
    CompareRpcs,
    pb_grpc.PlannerServiceServicer,
):
    """The one service of planner.v1."""
