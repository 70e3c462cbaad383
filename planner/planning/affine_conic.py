"""Sub-millisecond re-solves of a compiled DPP problem.

Under DPP the conic data (c, A, b) that cvxpy hands the solver is an exact affine function of the
parameter values. cvxpy re-applies that map through scipy.sparse tensors on every solve, which
costs ~1 ms on a problem this small, about ten times the solve itself. This module records the
map once, densely (probing one parameter at a time around a base point), and afterwards builds
the solver data with a few small numpy operations and calls Clarabel directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import clarabel
import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.solvers.conic_solvers.clarabel_conif import (
    CLARABEL,
    dims_to_solver_cones,
)
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _dense(data: dict[str, Any]) -> tuple[Array, Array, Array]:
    return (
        np.asarray(data["A"].toarray(), dtype=np.float64),
        np.asarray(data["b"], dtype=np.float64).ravel(),
        np.asarray(data["c"], dtype=np.float64).ravel(),
    )


class AffineConicProblem:
    """A DPP problem whose Clarabel data is rebuilt from parameter values by an affine map."""

    def __init__(
        self,
        problem: cp.Problem,
        parameters: Sequence[cp.Parameter],
        variables: Sequence[cp.Variable],
        solver_options: dict[str, Any],
    ) -> None:
        """Every parameter must hold a value: the map is probed around those values."""
        self.parameters = list(parameters)
        base = np.array([float(p.value) for p in self.parameters])
        data, _, _ = problem.get_problem_data(cp.CLARABEL)
        self._base = base
        self._a0, self._b0, self._c0 = _dense(data)
        slopes = []
        for index, parameter in enumerate(self.parameters):
            parameter.value = base[index] + 1.0
            probed, _, _ = problem.get_problem_data(cp.CLARABEL)
            a, b, c = _dense(probed)
            slopes.append((a - self._a0, b - self._b0, c - self._c0))
            parameter.value = base[index]
        self._da = np.stack([s[0] for s in slopes])
        self._db = np.stack([s[1] for s in slopes])
        self._dc = np.stack([s[2] for s in slopes])
        columns = data["param_prob"].var_id_to_col
        self._columns = [columns[v.id] for v in variables]
        # A's sparsity pattern over all parameter values: union of the base and every slope.
        pattern = sp.csc_array((np.abs(self._a0) + np.abs(self._da).sum(axis=0)) > 0)
        self._indptr, self._indices = pattern.indptr, pattern.indices
        self._rows = pattern.indices
        self._cols = np.repeat(np.arange(pattern.shape[1]), np.diff(pattern.indptr))
        self._shape = pattern.shape
        self._da_nz = self._da[:, self._rows, self._cols]
        self._a0_nz = self._a0[self._rows, self._cols]
        # One matrix, refilled in place per solve (Clarabel copies it into its own storage).
        self._a = sp.csc_array((self._a0_nz.copy(), self._indices, self._indptr), shape=self._shape)
        self._cones = dims_to_solver_cones(data["dims"])
        self._settings = CLARABEL.parse_solver_opts(False, dict(solver_options))
        size = self._c0.size
        self._p = sp.csc_array((size, size))

    def data(self, values: Sequence[float]) -> tuple[sp.csc_array, Array, Array]:
        """Clarabel's (A, b, c) for these parameter values (in the order given at build).

        A is this object's one matrix, overwritten by the next call.
        """
        delta = np.asarray(values, dtype=np.float64) - self._base
        self._a.data[:] = self._a0_nz + delta @ self._da_nz
        return self._a, self._b0 + delta @ self._db, self._c0 + delta @ self._dc

    def solve(self, values: Sequence[float]) -> tuple[str, list[float]]:
        """Clarabel's status and the variables' values for these parameter values (in order)."""
        a, b, c = self.data(values)
        solver = clarabel.DefaultSolver(self._p, c, a, b, self._cones, self._settings)
        solution = solver.solve()
        x = solution.x
        return str(solution.status), [float(x[col]) for col in self._columns]
