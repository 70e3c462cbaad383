"""Fit jobs of the loss-curve forms (multi_power, lr_annealing): one fit to training curves.

Picklable values, run in the fit pool like FitJob. There is no bootstrap: the curves of a few
runs (often one model) give no sample of runs to resample, and checkpoints along one curve are
not independent; a version of these forms stores no intervals and no ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.curves.fit import TINY_LOSS, Curve, MultiPowerMethod, fit_lr_annealing, fit_multi_power
from planner.curves.lr_annealing import DEFAULT_DECAY, AnnealingLaw
from planner.curves.multi_power import MultiPowerLaw
from planner.errors import Infeasible, InvalidInput
from planner.fitting.result import Diagnostics

CURVE_FIT_FORMS = ("multi_power", "lr_annealing")
# How each form may be fitted (planner.curves.fit), the default first; Huber (delta 1e-3) on log
# loss in all: "huber_adamw" the authors' early-stopped AdamW (it predicts held-out schedules
# better than a minimiser), "huber" L-BFGS-B to a minimiser (it fits the curves given closer,
# and its step sizes do not assume losses near 3).
CURVE_METHODS: dict[str, tuple[str, ...]] = {
    "multi_power": ("huber_adamw", "huber"),
    "lr_annealing": ("huber",),
}
# Parameters each form's fit frees (the annealing law's decay stays at DEFAULT_DECAY).
FREE_PARAMETERS = {"multi_power": 7, "lr_annealing": 4}


@dataclass(frozen=True)
class CurveFit:
    """A fitted loss-curve law with its objective, diagnostics and warnings."""

    law: MultiPowerLaw | AnnealingLaw
    objective: float
    diagnostics: Diagnostics
    options: dict[str, str]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class CurveFitJob:
    form: str
    curves: tuple[Curve, ...]
    # One of CURVE_METHODS[form]; empty: the form's default.
    method: str = ""

    def validated(self) -> CurveFitJob:
        if self.form not in CURVE_FIT_FORMS:
            raise InvalidInput("form", f"not a loss-curve form; expected one of {CURVE_FIT_FORMS}")
        methods = CURVE_METHODS[self.form]
        if self.method and self.method not in methods:
            raise InvalidInput("method", f"a {self.form} law is fitted by one of {list(methods)}")
        if not self.method:
            return replace(self, method=methods[0]).validated()
        rows = sum(int(curve.steps.size) for curve in self.curves)
        free = FREE_PARAMETERS[self.form]
        if rows <= free:
            raise Infeasible(
                f"{rows} checkpoints cannot determine the {free} parameters of the {self.form} "
                f"law; give at least {free + 1}",
                field="runs",
            )
        return self

    def fit(self) -> CurveFit:
        if self.form == "multi_power":
            how: MultiPowerMethod = "adamw" if self.method == "huber_adamw" else "minimise"
            mpl = fit_multi_power(list(self.curves), method=how)
            law: MultiPowerLaw | AnnealingLaw = mpl.law
            objective, on_bound = mpl.objective, mpl.at_bounds
            options: dict[str, str] = {}
        else:
            annealing = fit_lr_annealing(list(self.curves))
            law, objective, on_bound = annealing.law, annealing.objective, ()
            options = {"decay": f"{DEFAULT_DECAY:g} (fixed)"}
        diagnostics = _diagnose(law, self.curves, on_bound, FREE_PARAMETERS[self.form])
        warnings = tuple(
            f"{name} ended on a bound of its search: these curves do not pin it down"
            for name in on_bound
        )
        return CurveFit(law, objective, diagnostics, options, warnings)


def _diagnose(
    law: MultiPowerLaw | AnnealingLaw,
    curves: tuple[Curve, ...],
    on_bound: tuple[str, ...],
    free_parameters: int,
) -> Diagnostics:
    """Residuals ln predicted - ln observed over every checkpoint of every curve."""
    # Floored as in the fit's objective: a law predicting a loss <= 0 has a huge residual.
    residuals = np.concatenate(
        [np.log(np.maximum(law.predict(c.lrs, c.steps), TINY_LOSS) / c.loss) for c in curves]
    )
    dof = residuals.size - free_parameters
    return Diagnostics(
        rmse_log_loss=float(np.sqrt(np.mean(residuals**2))),
        max_abs_log_loss=float(np.max(np.abs(residuals))),
        runs=int(residuals.size),
        on_bound=on_bound,
        residual_sd_log_loss=float(np.sqrt(np.sum(residuals**2) / dof)),
    )
