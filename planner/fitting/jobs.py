"""One fit request, whatever the law form: fit all runs once, refit bootstrap resamples.

A FitJob is a small picklable value, so the service can send its `fit` and `bootstrap` to worker
processes without knowing which form it fits. Method "auto" is resolved by `fit` (see auto.py);
the bootstrap then refits with the method and options that won (`resolved`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from planner.errors import Infeasible, InvalidInput, Unsupported
from planner.fitting import auto, chinchilla, data_constrained, overtraining
from planner.fitting.bnsl import bootstrap_bnsl, fit_bnsl_form
from planner.fitting.checkpoints import CheckpointSelection
from planner.fitting.compute_power import bootstrap_compute_power, fit_compute_power
from planner.fitting.data import Array, Index, Runs
from planner.fitting.options import FitOptions
from planner.fitting.result import Diagnostics
from planner.laws import ChinchillaLaw, Law, OvertrainingLaw
from planner.laws.bnsl import MAX_BREAKS
from planner.laws.bnsl_forms import BNSL_LAWS, BnslLaw, columns
from planner.laws.compute_power import COLUMNS as COMPUTE_POWER_COLUMNS
from planner.laws.compute_power import ComputePowerLaw
from planner.laws.data_constrained import DataConstrainedLaw

BNSL_FORMS = tuple(f"bnsl_{variable}" for variable in BNSL_LAWS)
COMPUTE_POWER = ComputePowerLaw.form
FITTABLE_FORMS = ("chinchilla", "data_constrained", "overtraining", *BNSL_FORMS, COMPUTE_POWER)
METHODS = (*chinchilla.METHODS, "auto")
# Forms whose fit takes the Chinchilla-form options (tied exponents, fixed parameters, ...).
OPTION_FORMS = ("chinchilla", "overtraining")


@dataclass(frozen=True)
class FittedLaw:
    """A fitted law of any form, with its objective, diagnostics and the options used."""

    law: Law
    method: str
    objective: float
    diagnostics: Diagnostics
    options: dict[str, str] = field(default_factory=dict)
    # How method "auto" chose; None when the caller named the method.
    choice: auto.AutoChoice | None = None
    # Reasons not to trust the law as is; a law with warnings is not made current by default.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FitJob:
    """What to fit: the runs (every checkpoint row), the form and method, the options, which
    checkpoints to use, and each row's training compute (method auto holds the largest out).
    data_constrained: `base` as in data_constrained.BASES, `chinchilla` for base "law"."""

    runs: Runs
    form: str = "chinchilla"
    method: str = "auto"
    base: str = ""
    chinchilla: ChinchillaLaw | None = None
    options: FitOptions = field(default_factory=FitOptions)
    checkpoints: CheckpointSelection = field(default_factory=CheckpointSelection)
    compute: Array | None = None
    # bnsl_* forms: breaks (None: chosen by held-out error), the seed of the restarts, and the
    # FLOPs per parameter per token that define x = k N D for bnsl_compute.
    breaks: int | None = None
    seed: int = 0
    flops_per_param_token: float = 6.0

    def validated(self) -> FitJob:
        if self.form not in FITTABLE_FORMS:
            raise Unsupported(
                f"fitting the {self.form!r} form is not supported; fittable forms: "
                f"{list(FITTABLE_FORMS)}",
                field="form",
            )
        if self.form in BNSL_FORMS:
            return self._validated_bnsl()
        if self.form == COMPUTE_POWER:
            return self._validated_compute_power()
        if self.method not in METHODS:
            raise InvalidInput(
                "method", f"unknown fit method {self.method!r}; known: {list(METHODS)}"
            )
        if self.breaks is not None:
            raise InvalidInput("breaks", "applies only to the bnsl_* forms")
        options = self.options.validated()
        checkpoints = self.checkpoints.validated()
        if self.form not in OPTION_FORMS and not options.is_default:
            raise InvalidInput(
                "options",
                f"tied exponents, fixed parameters and the over-estimate penalty apply to the "
                f"{' and '.join(OPTION_FORMS)} forms, not {self.form!r}",
            )
        if self.compute is not None and self.compute.shape != self.runs.params.shape:
            raise InvalidInput("compute", "needs one value per run")
        if self.form == "overtraining":
            options = overtraining.tied(options)
        job = replace(self, options=options, checkpoints=checkpoints)
        if self.form in OPTION_FORMS:
            if self.base:
                raise InvalidInput("base", "applies only to the data_constrained form")
            job.selected.require_fittable(options.free_parameters)
            _require_runs(job.selected, options.free_parameters)
            return job
        base = self.base or ("law" if self.chinchilla is not None else "single_epoch")
        if base not in data_constrained.BASES:
            raise InvalidInput(
                "base", f"unknown base {base!r}; known: {list(data_constrained.BASES)}"
            )
        if base == "law" and job.method == "auto":
            # The Chinchilla part is the stored law's; R* are always fitted by Huber.
            return replace(job, base=base, method="huber")
        return replace(job, base=base)

    def _check_single_method(self, method: str) -> None:
        """Forms fitted one way, without the Chinchilla options: `method` (or "auto") only."""
        if self.method not in ("auto", method):
            raise InvalidInput(
                "method", f"a {self.form} law is fitted by method {method!r} (or 'auto'), not "
                f"{self.method!r}"
            )  # fmt: skip
        if not self.options.is_default:
            raise InvalidInput(
                "options",
                f"tied exponents, fixed parameters and the over-estimate penalty apply to the "
                f"{' and '.join(OPTION_FORMS)} forms, not {self.form!r}",
            )

    def _validated_bnsl(self) -> FitJob:
        self._check_single_method("bnsl")
        if len(self.selected) == 0:
            raise Infeasible("the family has no runs to fit", field="family")
        if self.breaks is not None and not 0 <= self.breaks <= MAX_BREAKS:
            raise InvalidInput("breaks", f"must be 0 to {MAX_BREAKS}, got {self.breaks}")
        return replace(self, method="bnsl", checkpoints=self.checkpoints.validated())

    def _validated_compute_power(self) -> FitJob:
        self._check_single_method("huber")
        if self.breaks is not None:
            raise InvalidInput("breaks", "applies only to the bnsl_* forms")
        if self.compute is not None and self.compute.shape != self.runs.params.shape:
            raise InvalidInput("compute", "needs one value per run")
        if len(self.selected) == 0:
            raise Infeasible("the family has no runs to fit", field="family")
        return replace(self, method="huber", checkpoints=self.checkpoints.validated())

    def _selected_compute(self) -> Array:
        """Training compute of the selected rows: each run's flops when given, else k N D."""
        if self.compute is None:
            runs = self.selected
            return self.flops_per_param_token * runs.params * runs.tokens
        return self.compute[self.checkpoints.rows(self.runs)]

    @property
    def selected(self) -> Runs:
        """The rows the fit uses (the chosen checkpoints of each run)."""
        return self.checkpoints.select(self.runs)

    def parameter_names(self, fitted: Law) -> tuple[str, ...]:
        """The ensemble's columns for the fitted law (a BNSL's depend on its breaks)."""
        if self.form == "chinchilla":
            return chinchilla.PARAMETER_NAMES
        if self.form == "overtraining":
            return overtraining.OVERTRAINING_PARAMETERS
        if isinstance(fitted, BnslLaw):
            return columns(len(fitted.breaks))
        if isinstance(fitted, ComputePowerLaw):
            return COMPUTE_POWER_COLUMNS
        return data_constrained.PARAMETER_NAMES

    def _x(self, runs: Runs) -> Array:
        """The variable of a BNSL form (compute is k N D, as the stored law predicts it)."""
        variable = self.form.removeprefix("bnsl_")
        if variable == "compute":
            return self.flops_per_param_token * runs.params * runs.tokens
        return runs.params if variable == "params" else runs.tokens

    def _compute(self) -> Array:
        if self.compute is not None:
            return self.compute
        return 6.0 * self.runs.params * self.runs.tokens

    def choose(self) -> auto.AutoChoice:
        """Method auto's rolling-origin choice on these runs."""
        if self.form == "overtraining":
            pool = auto.candidates(self.options)  # tied already: one exponent
            return auto.choose(self.runs, self._compute(), self.options, self.checkpoints, pool)
        if self.form == "data_constrained":
            # The method fits the Chinchilla part, on the runs that saw each token once.
            single = self.runs.single_epoch()
            compute = self._compute()[self.runs.tokens <= _unique_or_inf(self.runs)]
            # fit_data_constrained takes a method, not options: plain candidates only.
            pool = tuple(
                c
                for c in auto.candidates(self.options)
                if not c.options.tie_exponents and c.options.overestimate_penalty == 1.0
            )
            return auto.choose(single, compute, self.options, self.checkpoints, pool)
        return auto.choose(self.runs, self._compute(), self.options, self.checkpoints)

    def fit(self) -> FittedLaw:
        """The fit on all selected runs (after method auto's choice, when asked)."""
        choice = self.choose() if self.method == "auto" and self.form not in BNSL_FORMS else None
        job = self if choice is None else self._as(choice.chosen)
        fitted = job._fit_named()
        options = {**fitted.options, **job.checkpoints.describe(), **job.options.describe()}
        if choice is not None:
            options["method_requested"] = "auto"
        warnings = tuple(
            f"{name} ended on a bound of its search: these runs do not pin it down"
            for name in fitted.diagnostics.on_bound
        )
        return replace(fitted, options=options, choice=choice, warnings=warnings)

    def resolved(self, fitted: FittedLaw) -> FitJob:
        """This job with the method and options that won method auto (what the bootstrap
        refits); unchanged when the method was named."""
        return self if fitted.choice is None else self._as(fitted.choice.chosen)

    def _as(self, candidate: auto.Candidate) -> FitJob:
        return replace(self, method=candidate.method, options=candidate.options)

    def _fit_named(self) -> FittedLaw:
        runs = self.selected
        if self.form == "chinchilla":
            result = chinchilla.fit_chinchilla(runs, self.method, options=self.options)
            return FittedLaw(result.law, self.method, result.objective, result.diagnostics)
        if self.form == "overtraining":
            tied = overtraining.fit_overtraining(runs, self.method, self.options)
            return FittedLaw(tied.law, self.method, tied.objective, tied.diagnostics)
        if self.form in BNSL_FORMS:
            curve = fit_bnsl_form(
                self._x(runs),
                runs.loss,
                self.form.removeprefix("bnsl_"),
                self.breaks,
                self.seed,
                self.flops_per_param_token,
            )
            options = {"breaks": str(curve.choice.breaks)}
            if curve.choice.held_out_error:
                options["breaks_chosen_by"] = "held-out error on the largest 20% of x"
            return FittedLaw(curve.law, "bnsl", float("nan"), curve.diagnostics, options)
        if self.form == COMPUTE_POWER:
            power = fit_compute_power(
                self._selected_compute(), runs.loss, runs.row_weights, self.flops_per_param_token
            )
            offset = {
                "offset": "fitted" if power.offset else "0 (an offset did not improve the fit)"
            }
            return FittedLaw(power.law, "huber", power.objective, power.diagnostics, offset)
        fitted = data_constrained.fit_data_constrained(
            runs, self.base, self.method, self.chinchilla
        )
        return FittedLaw(
            fitted.law, self.method, fitted.objective, fitted.diagnostics, {"base": self.base}
        )

    def bootstrap(self, samples: Sequence[Index], start: Law) -> Array:
        """Parameter vectors (in `parameter_names` order) of refits on each sample of rows of
        `selected`, refined from `start`, the fit on all runs; NaN rows where a sample failed."""
        runs = self.selected
        if self.form == "chinchilla":
            assert isinstance(start, ChinchillaLaw)
            return chinchilla.bootstrap_fits(runs, self.method, samples, start, self.options)
        if self.form == "overtraining":
            assert isinstance(start, OvertrainingLaw)
            return overtraining.bootstrap_overtraining(
                runs, self.method, samples, start, self.options
            )
        if isinstance(start, BnslLaw):
            x = self._x(runs)
            return bootstrap_bnsl(x, runs.loss, len(start.breaks), samples, self.seed)
        if isinstance(start, ComputePowerLaw):
            compute = self._selected_compute()
            return bootstrap_compute_power(compute, runs.loss, samples, start, runs.row_weights)
        assert isinstance(start, DataConstrainedLaw)
        return data_constrained.bootstrap_fits(
            runs, samples, self.base, self.method, self.chinchilla, start
        )


def _unique_or_inf(runs: Runs) -> Array:
    return np.full(len(runs), np.inf) if runs.unique is None else runs.unique * (1 + 1e-9)


def _require_runs(runs: Runs, free_parameters: int) -> None:
    """Checkpoints of one run are not independent: the runs, not the rows, must outnumber the
    free parameters."""
    if runs.run_count <= free_parameters:
        raise Infeasible(
            f"{runs.run_count} training runs cannot determine {free_parameters} free "
            f"parameters, however many checkpoints they have; give at least "
            f"{free_parameters + 1}",
            field="runs",
        )
