"""A synchronous Python client of planner.v1 returning typed results.

with PlannerClient("localhost:50051") as client:
    plan = client.plan_compute_optimal("chinchilla-epoch-2024", compute=5.76e23)

with PlannerClient("planner.example.org:50051", token, tls=True, ca_file="ca.pem") as client:
    ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from numpy.typing import ArrayLike, NDArray

from clients import results
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as pb_grpc

CONVENTIONS = {
    "total": pb.PARAM_CONVENTION_TOTAL,
    "non_embedding": pb.PARAM_CONVENTION_NON_EMBEDDING,
}
CONVENTION_NAMES = {
    pb.PARAM_CONVENTION_UNSPECIFIED: "total",
    pb.PARAM_CONVENTION_TOTAL: "total",
    pb.PARAM_CONVENTION_NON_EMBEDDING: "non_embedding",
}
INTERVAL_KINDS = {
    "": pb.INTERVAL_KIND_UNSPECIFIED,
    "band": pb.INTERVAL_KIND_BAND,
    "prediction": pb.INTERVAL_KIND_PREDICTION,
}
# The server answers with the band when no kind was asked for.
INTERVAL_KIND_NAMES = {
    pb.INTERVAL_KIND_UNSPECIFIED: "band",
    pb.INTERVAL_KIND_BAND: "band",
    pb.INTERVAL_KIND_PREDICTION: "prediction",
}
# Batch answers run to tens of MB (a million plans is about 55 MB); gRPC's default is 4 MiB.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
# How long a fit may take, or an operation be watched, unless the caller says otherwise.
FIT_TIMEOUT = 600.0
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class PlannerClientError(Exception):
    """A call failed: the status code name, the server's message and any field violations."""

    def __init__(self, code: str, message: str, violations: list[FieldViolation]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.violations = violations

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> PlannerClientError:
        violations: list[FieldViolation] = []
        status = rpc_status.from_call(error)
        if status is not None:
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    violations.extend(
                        FieldViolation(v.field, v.description) for v in bad.field_violations
                    )
        return cls(error.code().name, error.details() or "", violations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "field_violations": [
                {"field": v.field, "description": v.description} for v in self.violations
            ],
        }


class OperationFailed(PlannerClientError):
    """An operation waited for ended FAILED or CANCELLED: its error's code and message, as the
    synchronous call would have raised them, and the operation itself."""

    def __init__(self, operation: results.Operation) -> None:
        error = operation.error or results.OperationError("UNKNOWN", "the operation failed")
        super().__init__(error.code, error.message, [])
        self.operation = operation


def _time(stamp: Any) -> str:
    return str(stamp.ToJsonString()) if stamp.seconds or stamp.nanos else ""


def _law_info(message: pb.LawSummary) -> results.LawInfo:
    return results.LawInfo(form=message.form, version=message.version, method=message.method)


def _family(message: pb.Family) -> results.Family:
    return results.Family(
        name=message.name,
        description=message.description,
        param_convention=CONVENTION_NAMES.get(message.param_convention, "total"),
        flops_per_param_token=message.flops_per_param_token,
        revision=message.revision,
        run_count=message.run_count,
        laws=[_law_info(law) for law in message.laws],
        create_time=_time(message.create_time),
        update_time=_time(message.update_time),
        metric=message.metric,
    )


def _auto(message: pb.AutoChoice) -> results.AutoChoice:
    return results.AutoChoice(
        chosen=message.chosen,
        candidates=[
            results.CandidateScore(
                c.candidate, c.mean_abs_relative_error, c.max_abs_relative_error, c.failure
            )
            for c in message.candidates
        ],
        folds=message.folds,
        note=message.note,
    )


def _law(message: pb.Law) -> results.Law:
    diagnostics: dict[str, Any] = {}
    auto = None
    if message.HasField("diagnostics"):
        d = message.diagnostics
        diagnostics = {
            "rmse_log_loss": d.rmse_log_loss,
            "max_abs_log_loss": d.max_abs_log_loss,
            "runs": d.runs,
            "training_runs": d.training_runs,
            "on_bound": list(d.on_bound),
            "objective": d.objective,
            "failed_resamples": d.failed_resamples,
            "warnings": list(d.warnings),
            "residual_sd_log_loss": d.residual_sd_log_loss,
        }
        if d.HasField("auto"):
            auto = _auto(d.auto)
    return results.Law(
        family=message.family,
        form=message.form,
        version=message.version,
        parameters=dict(message.parameters),
        method=message.source.method,
        citation=message.source.citation,
        note=message.source.note,
        create_time=_time(message.create_time),
        diagnostics=diagnostics,
        intervals={k: (v.low, v.high) for k, v in message.intervals.items()},
        ensemble_size=message.ensemble_size,
        run_ids=list(message.run_ids),
        options=dict(message.options),
        current=message.current,
        auto=auto,
    )


def _run_message(run: results.Run) -> pb.Run:
    message = pb.Run(
        run_id=run.run_id,
        params=run.params,
        tokens=run.tokens,
        loss=run.loss,
        tags=run.tags,
        metrics=run.metrics,
    )
    if run.unique_tokens is not None:
        message.unique_tokens = run.unique_tokens
    if run.flops is not None:
        message.flops = run.flops
    if run.step is not None:
        message.step = run.step
    if run.weight is not None:
        message.weight = run.weight
    if run.lr is not None:
        message.lr = run.lr
    if run.batch_tokens is not None:
        message.batch_tokens = run.batch_tokens
    return message


def _run(message: pb.Run) -> results.Run:
    return results.Run(
        run_id=message.run_id,
        params=message.params,
        tokens=message.tokens,
        loss=message.loss,
        unique_tokens=message.unique_tokens if message.HasField("unique_tokens") else None,
        flops=message.flops if message.HasField("flops") else None,
        step=message.step if message.HasField("step") else None,
        tags=dict(message.tags),
        weight=message.weight if message.HasField("weight") else None,
        lr=message.lr if message.HasField("lr") else None,
        batch_tokens=message.batch_tokens if message.HasField("batch_tokens") else None,
        metrics=dict(message.metrics),
    )


def _selector(selector: results.LawSelector) -> pb.LawSelector:
    return pb.LawSelector(family=selector.family, form=selector.form, version=selector.version)


def _options_message(options: results.FitOptions | None) -> pb.FitOptions:
    if options is None:
        return pb.FitOptions()
    message = pb.FitOptions(
        checkpoints=options.checkpoints,
        after_fraction=options.after_fraction,
        tie_exponents=options.tie_exponents,
        fixed=options.fixed,
        borrow=options.borrow,
        overestimate_penalty=options.overestimate_penalty,
    )
    if options.borrow_from is not None:
        message.borrow_from.CopyFrom(_selector(options.borrow_from))
    return message


def _fit_request(
    family: str,
    method: str,
    bootstrap: int | None,
    seed: int,
    form: str,
    expected_revision: int | None,
    base: str,
    options: results.FitOptions | None,
    make_current: bool | None,
    breaks: int | None,
    schedules: Mapping[str, pb.Schedule] | None = None,
) -> pb.FitLawRequest:
    request = pb.FitLawRequest(
        family=family,
        form=form,
        method=method,
        seed=seed,
        base=base,
        options=_options_message(options),
        schedules=dict(schedules or {}),
    )
    if bootstrap is not None:
        request.bootstrap = bootstrap
    if expected_revision is not None:
        request.expected_revision = expected_revision
    if make_current is not None:
        request.make_current = make_current
    if breaks is not None:
        request.breaks = breaks
    return request


def _backtest_request(
    family: str, train_below: float, methods: tuple[str, ...], options: results.FitOptions | None
) -> pb.BacktestLawRequest:
    return pb.BacktestLawRequest(
        family=family,
        train_below=train_below,
        methods=list(methods),
        options=_options_message(options),
    )


def _backtest(reply: pb.BacktestLawResponse) -> results.Backtest:
    return results.Backtest(
        train_runs=reply.train_runs,
        test_runs=reply.test_runs,
        methods=[
            results.MethodBacktest(
                method=m.method,
                parameters=dict(m.parameters),
                failure=m.failure,
                mean_abs_relative_error=m.mean_abs_relative_error,
                max_abs_relative_error=m.max_abs_relative_error,
                runs=[
                    results.HeldOutRun(
                        r.run_id, r.flops, r.observed_loss, r.predicted_loss, r.relative_error
                    )
                    for r in m.runs
                ],
                chosen=m.chosen,
            )
            for m in reply.methods
        ],
    )


def _operation(message: pb.Operation) -> results.Operation:
    result = message.WhichOneof("result")
    progress = message.progress
    return results.Operation(
        name=message.name,
        kind=message.kind,
        family=message.family,
        state=pb.OperationState.Name(message.state).removeprefix("OPERATION_STATE_"),
        done=message.done,
        progress=results.OperationProgress(progress.stage, progress.done, progress.total),
        create_time=_time(message.create_time),
        update_time=_time(message.update_time),
        attempt=message.attempt,
        law=_law(message.law) if result == "law" else None,
        backtest=_backtest(message.backtest) if result == "backtest" else None,
        error=(
            results.OperationError(message.error.code, message.error.message)
            if result == "error"
            else None
        ),
    )


def _finished(operation: results.Operation) -> results.Operation:
    """The operation if it succeeded; OperationFailed if it failed or was cancelled."""
    if operation.error is not None or operation.state in ("FAILED", "CANCELLED"):
        raise OperationFailed(operation)
    return operation


def _doubles(values: ArrayLike) -> NDArray[np.float64]:
    """A flat float64 array of the caller's numbers (a list, tuple or array)."""
    return np.asarray(values, dtype=np.float64).ravel()


def _array(values: Any) -> NDArray[np.float64]:
    # A repeated double field converts to numpy without a Python-level loop.
    return np.array(values, dtype=np.float64)


# -- loss curves ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurvePrediction:
    """A predicted loss curve: the loss after each of `steps` (1-based), and after the last."""

    name: str
    steps: NDArray[np.int64]
    loss: NDArray[np.float64]
    final_loss: float
    total_steps: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": self.steps.tolist(),
            "loss": self.loss.tolist(),
            "final_loss": self.final_loss,
            "total_steps": self.total_steps,
        }


@dataclass(frozen=True)
class CurvePredictions:
    curves: list[CurvePrediction]
    law: results.LawInfo


@dataclass(frozen=True)
class SchedulePlan:
    """PlanSchedule's answer: the schedule (named WSD, or its per-step rates), its final loss
    against cosine's, and both curves at the same steps."""

    schedule: pb.Schedule
    final_loss: float
    cosine_final_loss: float
    gain_over_cosine: float
    decay_fraction: float | None
    curve: CurvePrediction
    cosine_curve: CurvePrediction
    solver: str
    law: results.LawInfo


def named_schedule(
    family: str,
    total_steps: int,
    peak_lr: float,
    name: str = "",
    **parameters: Any,
) -> pb.Schedule:
    """A NamedSchedule message: `parameters` are its other fields (floor_lr, warmup_steps,
    decay_fraction, decay_start, decay_shape, second_lr, switch_step)."""
    named = pb.NamedSchedule(family=family, total_steps=total_steps, peak_lr=peak_lr, **parameters)
    return pb.Schedule(name=name, named=named)


def rates_schedule(values: ArrayLike, name: str = "") -> pb.Schedule:
    """A schedule given by its rate at every step from step 0."""
    return pb.Schedule(name=name, lrs=pb.LearningRates(values=_doubles(values)))


def _curve(message: pb.CurvePrediction) -> CurvePrediction:
    return CurvePrediction(
        name=message.name,
        steps=np.array(message.steps, dtype=np.int64),
        loss=_array(message.loss),
        final_loss=message.final_loss,
        total_steps=message.total_steps,
    )


def _pem(path: str | Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ValueError(f"the {what} {path} is empty")
    return data


def channel_credentials(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials: trust the CAs in `ca_file` (default: the system's roots); with
    `cert_file` and `key_file` (both or neither), present that client certificate (mutual
    TLS). ValueError, naming the file, when one cannot be read."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both its certificate and key files")
    root = _pem(ca_file, "CA file") if ca_file is not None else None
    chain = _pem(cert_file, "client certificate file") if cert_file is not None else None
    key = _pem(key_file, "client key file") if key_file is not None else None
    return grpc.ssl_channel_credentials(root, key, chain)


class PlannerClient:
    """One channel to a planner server; every method raises PlannerClientError on failure.

    Plaintext unless `tls` (or any of the TLS files is given): then the server is verified
    against `ca_file` (default: the system's roots), `cert_file` and `key_file` are the client
    certificate for mutual TLS, and `server_name` overrides the name expected in the server's
    certificate (default: the target's host). The bearer `token` goes with every call.
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        timeout: float = 30.0,
        max_receive_bytes: int = MAX_RECEIVE_BYTES,
        *,
        tls: bool = False,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        server_name: str | None = None,
    ) -> None:
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", max_receive_bytes)]
        if tls or ca_file is not None or cert_file is not None or key_file is not None:
            credentials = channel_credentials(ca_file, cert_file, key_file)
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self._channel = grpc.secure_channel(target, credentials, options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.PlannerServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def __enter__(self) -> PlannerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(
                request, timeout=timeout or self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise PlannerClientError.from_rpc_error(error) from None

    def compare_laws(
        self,
        first: str | results.LawSelector,
        second: str | results.LawSelector,
        *,
        path: str = "",
        multiplier: float | None = None,
        axis: str = "",
        first_flops_per_second: float | None = None,
        second_flops_per_second: float | None = None,
        low: float | None = None,
        high: float | None = None,
        budgets: Iterable[float] = (),
        points: int = 0,
    ) -> results.Comparison:
        """Two recipes' laws on one axis (CompareLaws): a family name picks its default
        final-loss law. path "compute_optimal" or "multiplier" (tokens per parameter);
        axis "flops" or "accelerator_hours" (with each recipe's achieved FLOP/s)."""
        request = pb.CompareLawsRequest(
            first=_selector(results.LawSelector(first) if isinstance(first, str) else first),
            second=_selector(results.LawSelector(second) if isinstance(second, str) else second),
            path=path,
            axis=axis,
            budgets=list(budgets),
            points=points,
        )
        optional = {
            "multiplier": multiplier,
            "first_flops_per_accelerator_second": first_flops_per_second,
            "second_flops_per_accelerator_second": second_flops_per_second,
            "low": low,
            "high": high,
        }
        for name, value in optional.items():
            if value is not None:
                setattr(request, name, value)
        return _comparison(self._call("CompareLaws", request))

    # -- families -----------------------------------------------------------------------------

    def create_family(
        self,
        name: str,
        description: str = "",
        param_convention: str = "total",
        flops_per_param_token: float = 6.0,
        metric: str = "",
    ) -> results.Family:
        if param_convention not in CONVENTIONS:
            raise ValueError(f"param_convention must be one of {sorted(CONVENTIONS)}")
        family = pb.Family(
            name=name,
            description=description,
            param_convention=CONVENTIONS[param_convention],
            flops_per_param_token=flops_per_param_token,
            metric=metric,
        )
        reply = self._call("CreateFamily", pb.CreateFamilyRequest(family=family))
        return _family(reply.family)

    def get_family(self, name: str) -> results.Family:
        return _family(self._call("GetFamily", pb.GetFamilyRequest(name=name)).family)

    def list_families(self, page_size: int = 0) -> Iterator[results.Family]:
        token = ""
        while True:
            request = pb.ListFamiliesRequest(page_size=page_size, page_token=token)
            reply = self._call("ListFamilies", request)
            yield from (_family(f) for f in reply.families)
            token = reply.next_page_token
            if not token:
                return

    def delete_family(self, name: str, expected_revision: int | None = None) -> None:
        request = pb.DeleteFamilyRequest(name=name)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        self._call("DeleteFamily", request)

    # -- runs ---------------------------------------------------------------------------------

    def add_runs(
        self, family: str, runs: Iterable[results.Run], expected_revision: int | None = None
    ) -> results.AddRunsResult:
        request = pb.AddRunsRequest(family=family, runs=[_run_message(r) for r in runs])
        if expected_revision is not None:
            request.expected_revision = expected_revision
        reply = self._call("AddRuns", request)
        return results.AddRunsResult(reply.added, reply.unchanged, _family(reply.family))

    def list_runs(self, family: str, page_size: int = 0) -> Iterator[results.Run]:
        """Every run of the family in insertion order, fetched `page_size` at a time."""
        token = ""
        while True:
            page = self.list_runs_page(family, page_size, token)
            yield from page.runs
            token = page.next_page_token
            if not token:
                return

    def list_runs_page(
        self, family: str, page_size: int = 0, page_token: str = ""
    ) -> results.RunsPage:
        """One page of runs (page_size 0: the server's default of 1000)."""
        request = pb.ListRunsRequest(family=family, page_size=page_size, page_token=page_token)
        reply = self._call("ListRuns", request)
        return results.RunsPage([_run(r) for r in reply.runs], reply.next_page_token)

    def delete_runs(
        self, family: str, run_ids: Iterable[str], expected_revision: int | None = None
    ) -> results.DeleteRunsResult:
        """Delete runs by run_id, every checkpoint of each; all or none (NOT_FOUND names the
        first unknown run_id)."""
        request = pb.DeleteRunsRequest(family=family, run_ids=list(run_ids))
        if expected_revision is not None:
            request.expected_revision = expected_revision
        reply = self._call("DeleteRuns", request)
        return results.DeleteRunsResult(reply.deleted, _family(reply.family))

    # -- laws ---------------------------------------------------------------------------------

    def put_law(
        self,
        family: str,
        form: str,
        parameters: dict[str, float],
        citation: str = "",
        note: str = "",
        method: str = "published",
        expected_revision: int | None = None,
    ) -> results.Law:
        request = pb.PutLawRequest(
            family=family,
            form=form,
            parameters=parameters,
            source=pb.LawSource(method=method, citation=citation, note=note),
        )
        if expected_revision is not None:
            request.expected_revision = expected_revision
        return _law(self._call("PutLaw", request).law)

    def fit_law(
        self,
        family: str,
        method: str = "auto",
        bootstrap: int | None = None,
        seed: int = 0,
        form: str = "chinchilla",
        expected_revision: int | None = None,
        timeout: float | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
        base: str = "",
        *,
        options: results.FitOptions | None = None,
        make_current: bool | None = None,
        breaks: int | None = None,
        schedules: Mapping[str, pb.Schedule] | None = None,
        task: pb.TaskFitOptions | None = None,
    ) -> results.Law:
        """Fit the family's runs and store the result as a new version (can take a while:
        `timeout` defaults to 10 minutes). `on_progress(stage, done, total)` is called as the
        server reports progress.

        method: "auto" (every candidate method and option scored on held-out larger runs; the
            choice is in `Law.auto`), "vpnls" or "huber".
        base (data_constrained only): "law", "single_epoch" or "joint", where E, A, B, alpha,
            beta come from.
        options: checkpoints, tied exponents, fixed or borrowed parameters, penalty.
        make_current: None makes the version current unless the fit has warnings; True even
            with warnings; False stores it without making it current.
        breaks: bnsl_* forms only, 0-3 (None: chosen by held-out error).
        schedules: multi_power and lr_annealing only: the per-step learning rates of runs, by
            run_id (named_schedule, rates_schedule); a run without one has its schedule
            interpolated between its checkpoints' lr.

        The fit stops when the call does (a deadline, an interrupt); start_fit runs it as an
        operation that outlives its caller."""
        request = _fit_request(
            family,
            method,
            bootstrap,
            seed,
            form,
            expected_revision,
            base,
            options,
            make_current,
            breaks,
            schedules,
        )
        if task is not None:  # form "task_link" (fit_task_law)
            request.task.CopyFrom(task)
        try:
            events = self._stub.FitLaw(
                request, timeout=timeout or FIT_TIMEOUT, metadata=self._metadata
            )
            for event in events:
                if event.HasField("law"):
                    return _law(event.law)
                if on_progress is not None:
                    p = event.progress
                    on_progress(p.stage, p.done, p.total)
        except grpc.RpcError as error:
            raise PlannerClientError.from_rpc_error(error) from None
        raise PlannerClientError("UNKNOWN", "the fit stream ended without a law", [])

    def backtest(
        self,
        family: str,
        train_below: float,
        methods: tuple[str, ...] = (),
        timeout: float | None = None,
        options: results.FitOptions | None = None,
    ) -> results.Backtest:
        """Fit each method ("vpnls", "huber", "auto"; empty: all three) with `options` below
        the compute cut and score it above (nothing is stored)."""
        request = _backtest_request(family, train_below, methods, options)
        return _backtest(self._call("BacktestLaw", request, timeout or FIT_TIMEOUT))

    def fit_isoflop(self, family: str) -> results.IsoflopFit:
        """Chinchilla Approach 2 on the family's runs (biased unless alpha = beta; stored
        nowhere), for comparison with the fitted laws."""
        reply = self._call("FitIsoFLOP", pb.FitIsoFLOPRequest(family=family))
        return results.IsoflopFit(
            vertices=[
                results.IsoflopVertex(v.flops, v.params, v.tokens, v.runs) for v in reply.vertices
            ],
            params_exponent=reply.params_exponent,
            params_coefficient=reply.params_coefficient,
            tokens_exponent=reply.tokens_exponent,
            tokens_coefficient=reply.tokens_coefficient,
            caveat=reply.caveat,
        )

    def fit_broken_power_law(
        self,
        family: str,
        against: str = "compute",
        breaks: int | None = None,
        predict_at: Iterable[float] = (),
        seed: int = 0,
        timeout: float | None = None,
    ) -> results.BrokenPowerLawFit:
        """A broken power law of the runs' loss against compute, params or tokens; `breaks`
        None chooses 0-3 by held-out error. Predictions beyond the data are flagged."""
        request = pb.FitBrokenPowerLawRequest(
            family=family, against=against, predict_at=list(predict_at), seed=seed
        )
        if breaks is not None:
            request.breaks = breaks
        reply = self._call("FitBrokenPowerLaw", request, timeout or 120.0)
        return results.BrokenPowerLawFit(
            parameters=dict(reply.parameters),
            breaks=reply.breaks,
            held_out_error=dict(reply.held_out_error),
            fitted_up_to=reply.fitted_up_to,
            predictions=[
                results.CurvePoint(p.x, p.value, p.extrapolation) for p in reply.predictions
            ],
            runs=reply.runs,
        )

    def get_law(self, family: str, form: str = "", version: int = 0) -> results.Law:
        request = pb.GetLawRequest(family=family, form=form, version=version)
        return _law(self._call("GetLaw", request).law)

    def list_law_versions(self, family: str, form: str = "") -> list[results.Law]:
        """Every stored version, by form then oldest first (form "": every form)."""
        versions: list[results.Law] = []
        token = ""
        while True:  # every page
            request = pb.ListLawVersionsRequest(family=family, form=form, page_token=token)
            page = self._call("ListLawVersions", request)
            versions += [_law(law) for law in page.laws]
            token = page.next_page_token
            if not token:
                return versions

    def set_current_law(
        self, family: str, form: str, version: int, expected_revision: int | None = None
    ) -> results.Law:
        """Make a stored version the family's current law of its form (e.g. one a fit stored
        with warnings, or an older version to roll back to)."""
        request = pb.SetCurrentLawRequest(family=family, form=form, version=version)
        if expected_revision is not None:
            request.expected_revision = expected_revision
        return _law(self._call("SetCurrentLaw", request).law)

    # -- operations ---------------------------------------------------------------------------

    def start_fit(
        self,
        family: str,
        method: str = "auto",
        bootstrap: int | None = None,
        seed: int = 0,
        form: str = "chinchilla",
        expected_revision: int | None = None,
        *,
        base: str = "",
        options: results.FitOptions | None = None,
        make_current: bool | None = None,
        breaks: int | None = None,
        schedules: Mapping[str, pb.Schedule] | None = None,
    ) -> results.Operation:
        """fit_law's work as an operation, returned at once (QUEUED or RUNNING); it keeps
        running when this client goes away. watch_operation waits for its law."""
        request = _fit_request(
            family,
            method,
            bootstrap,
            seed,
            form,
            expected_revision,
            base,
            options,
            make_current,
            breaks,
            schedules,
        )
        return _operation(self._call("StartFit", request))

    def start_backtest(
        self,
        family: str,
        train_below: float,
        methods: tuple[str, ...] = (),
        options: results.FitOptions | None = None,
    ) -> results.Operation:
        """backtest's work as an operation, returned at once; its report is the operation's
        `backtest` once it succeeds."""
        request = _backtest_request(family, train_below, methods, options)
        return _operation(self._call("StartBacktest", request))

    def get_operation(self, name: str) -> results.Operation:
        """One operation ("operations/<id>") as it stands; a failed one's `error` is data here,
        not raised."""
        return _operation(self._call("GetOperation", pb.GetOperationRequest(name=name)))

    def list_operations(
        self, family: str | None = None, page_size: int = 0
    ) -> Iterator[results.Operation]:
        """Every operation (of one family when given), newest first, fetched `page_size` at a
        time (0: the server's default of 100)."""
        token = ""
        while True:
            request = pb.ListOperationsRequest(
                family=family or "", page_size=page_size, page_token=token
            )
            reply = self._call("ListOperations", request)
            yield from (_operation(op) for op in reply.operations)
            token = reply.next_page_token
            if not token:
                return

    def cancel_operation(self, name: str) -> results.Operation:
        """Cancel an operation (its work stops within about a second and it ends CANCELLED);
        a finished one is returned unchanged."""
        return _operation(self._call("CancelOperation", pb.CancelOperationRequest(name=name)))

    def watch_operation(
        self,
        name: str,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,
    ) -> results.Operation:
        """Wait for an operation to finish and return it, calling `on_progress(stage, done,
        total)` as it moves. Raises OperationFailed (a PlannerClientError with the operation's
        error code) if it failed or was cancelled. `timeout` (default 10 minutes) ends the wait
        only: the operation keeps running."""
        request = pb.WatchOperationRequest(name=name)
        try:
            stream = self._stub.WatchOperation(
                request, timeout=timeout or FIT_TIMEOUT, metadata=self._metadata
            )
            try:
                for message in stream:
                    operation = _operation(message)
                    if operation.done:
                        return _finished(operation)
                    if on_progress is not None and operation.progress.stage:
                        p = operation.progress
                        on_progress(p.stage, p.done, p.total)
            finally:
                stream.cancel()  # stop the stream at once when the caller is interrupted
        except grpc.RpcError as error:
            raise PlannerClientError.from_rpc_error(error) from None
        raise PlannerClientError("UNKNOWN", f"the watch of {name} ended before it was done", [])

    # -- queries ------------------------------------------------------------------------------

    def predict(
        self,
        family: str,
        params: float,
        tokens: float,
        unique_tokens: float | None = None,
        form: str = "",
        version: int = 0,
        interval_kind: str = "",
    ) -> results.Prediction:
        """`interval_kind`: "band" (the law's 95% band; the default when "") or "prediction"
        (95% for one new run: the band widened by the fit's residual noise)."""
        if interval_kind not in INTERVAL_KINDS:
            raise ValueError(f"interval_kind must be one of {sorted(INTERVAL_KINDS)}")
        request = pb.PredictRequest(
            law=pb.LawSelector(family=family, form=form, version=version),
            params=params,
            tokens=tokens,
            interval_kind=INTERVAL_KINDS[interval_kind],
        )
        if unique_tokens is not None:
            request.unique_tokens = unique_tokens
        reply = self._call("Predict", request)
        interval = (reply.interval.low, reply.interval.high) if reply.HasField("interval") else None
        return results.Prediction(
            loss=reply.loss,
            interval=interval,
            law=_law_info(reply.law),
            interval_kind=INTERVAL_KIND_NAMES.get(reply.interval_kind, "band"),
        )

    def plan_inference(
        self,
        family: str,
        inference_tokens: float,
        target_loss: float | None = None,
        lifetime_budget: float | None = None,
        max_params: float | None = None,
        max_tokens: float | None = None,
        training_weight: float | None = None,
        inference_weight: float | None = None,
        training_mfu: float | None = None,
        inference_mfu: float | None = None,
        form: str = "",
        version: int = 0,
        hardware: results.Hardware | None = None,
        inference_hardware: results.Hardware | None = None,
        hyperparameter_law: str | results.LawSelector | None = None,
    ) -> results.InferencePlan:
        """Least lifetime cost for `target_loss`, or lowest loss within `lifetime_budget`.
        With `hardware` the answer has `training`; with `inference_hardware` too (both priced)
        lifetime cost is money and the weights and MFUs must be None (serving's accelerator
        count does not matter)."""
        request = pb.PlanInferenceRequest(
            law=pb.LawSelector(family=family, form=form, version=version),
            inference_tokens=inference_tokens,
        )
        if target_loss is not None:
            request.target_loss = target_loss
        elif lifetime_budget is not None:
            request.lifetime_budget = lifetime_budget
        for name, value in (
            ("max_params", max_params),
            ("max_tokens", max_tokens),
            ("training_weight", training_weight),
            ("inference_weight", inference_weight),
            ("training_mfu", training_mfu),
            ("inference_mfu", inference_mfu),
        ):
            if value is not None:
                setattr(request, name, value)
        _set_hardware(request, hardware, hyperparameter_law)
        if inference_hardware is not None:
            request.inference_hardware.CopyFrom(_hardware(inference_hardware))
        reply = self._call("PlanInference", request)
        return results.InferencePlan(
            plan=_lifetime(reply.plan),
            chinchilla=_lifetime(reply.chinchilla),
            saving_flops=reply.saving_flops,
            saving_cost=reply.saving_cost,
            overtraining_ratio=reply.overtraining_ratio,
            binding=list(reply.binding),
            solver=reply.solver,
            law=_law_info(reply.law),
            intervals=_bands(reply.intervals),
            training=_training(reply),
        )

    def plan_overtraining(
        self,
        family: str,
        compute: float | None = None,
        target_loss: float | None = None,
        target_error: float | None = None,
        multiplier: float | None = None,
        version: int = 0,
        hardware: results.Hardware | None = None,
        hyperparameter_law: str | results.LawSelector | None = None,
        target_accuracy: tuple[str, float] | None = None,
    ) -> results.OvertrainingPlan:
        """Give exactly one of compute, target_loss, target_error or target_accuracy ((task,
        accuracy) through the family's task law: the plan's loss is then that task's loss);
        multiplier (tokens per parameter) defaults to the law's best at fixed compute. With
        `hardware` the answer has `training` (learning rate and batch from
        `hyperparameter_law`, default step-law-2025)."""
        # A task target is planned on the family's task law, not its over-training law.
        form = "" if target_accuracy is not None else "overtraining"
        request = pb.PlanOvertrainingRequest(
            law=pb.LawSelector(family=family, form=form, version=version)
        )
        if compute is not None:
            request.budget.flops = compute
        elif target_loss is not None:
            request.target_loss = target_loss
        elif target_error is not None:
            request.target_error = target_error
        elif target_accuracy is not None:
            request.target_accuracy.task, request.target_accuracy.accuracy = target_accuracy
        if multiplier is not None:
            request.multiplier = multiplier
        _set_hardware(request, hardware, hyperparameter_law)
        reply = self._call("PlanOvertraining", request)
        return results.OvertrainingPlan(
            multiplier=reply.multiplier,
            params=reply.params,
            tokens=reply.tokens,
            flops=reply.flops,
            loss=reply.loss,
            downstream_error=(
                reply.downstream_error if reply.HasField("downstream_error") else None
            ),
            best_multiplier=reply.best_multiplier,
            loss_penalty=reply.loss_penalty,
            compute_ratio=reply.compute_ratio,
            law=_law_info(reply.law),
            training=_training(reply),
        )

    def plan_data_mix(
        self,
        pools: list[results.DataPool],
        samples: float,
        a: float | None = None,
        d: float | None = None,
        compare_at: list[float] | None = None,
    ) -> results.DataMixPlan:
        """Which pools to train on for `samples` seen; every top-K candidate's error."""
        request = pb.PlanDataMixRequest(
            pools=[
                pb.DataPool(
                    name=p.name,
                    size=p.size,
                    utility=p.utility,
                    half_life=p.half_life,
                    observations=[
                        pb.PoolObservation(samples=n, error=e) for n, e in p.observations
                    ],
                )
                for p in pools
            ],
            samples=samples,
            compare_at=compare_at or [],
        )
        if a is not None:
            request.a = a
        if d is not None:
            request.d = d
        reply = self._call("PlanDataMix", request)
        return results.DataMixPlan(
            pools=[results.PoolShare(p.name, p.samples, p.epochs) for p in reply.pools],
            predicted_error=reply.predicted_error,
            candidates=[
                results.DataMixCandidate(list(c.pools), c.predicted_error, list(c.compare_errors))
                for c in reply.candidates
            ],
            solver=reply.solver,
            fitted=[
                results.FittedPool(f.name, f.utility, f.half_life, f.squared_error)
                for f in reply.fitted
            ],
        )

    def plan_sparsity(
        self,
        family: str,
        compute: float,
        final_sparsity: float | None = None,
        final_params: float | None = None,
        prune_start: float | None = None,
        prune_end: float | None = None,
        prunable_fraction: float | None = None,
        dense_flops: bool = False,
        form: str = "",
        version: int = 0,
        hardware: results.Hardware | None = None,
        hyperparameter_law: str | results.LawSelector | None = None,
    ) -> results.SparsityPlan:
        """Sparse pre-training plan for a budget and a final sparsity or deployed size; with
        `hardware`, `training` of its dense start (time counting the plan's FLOPs)."""
        request = pb.PlanSparsityRequest(
            law=pb.LawSelector(family=family, form=form, version=version),
            dense_flops=dense_flops,
        )
        request.budget.flops = compute
        if final_sparsity is not None:
            request.final_sparsity = final_sparsity
        elif final_params is not None:
            request.final_params = final_params
        for name, value in (
            ("prune_start", prune_start),
            ("prune_end", prune_end),
            ("prunable_fraction", prunable_fraction),
        ):
            if value is not None:
                setattr(request, name, value)
        _set_hardware(request, hardware, hyperparameter_law)
        reply = self._call("PlanSparsity", request)
        dense = reply.dense_same_size
        return results.SparsityPlan(
            dense_params=reply.dense_params,
            average_params=reply.average_params,
            final_params=reply.final_params,
            final_sparsity=reply.final_sparsity,
            tokens=reply.tokens,
            loss=reply.loss,
            flops=reply.flops,
            schedule=[(step.fraction, step.sparsity) for step in reply.schedule],
            dense_same_size=results.DenseModel(dense.params, dense.tokens, dense.loss),
            binding=list(reply.binding),
            notes=list(reply.notes),
            solver=reply.solver,
            law=_law_info(reply.law),
            intervals=_bands(reply.intervals),
            training=_training(reply),
        )

    def allocate_budget(self, jobs: list[results.BudgetJob], compute: float) -> results.Allocation:
        """Split `compute` FLOPs across the jobs, minimising the weighted sum of their losses."""
        request = pb.AllocateBudgetRequest()
        request.budget.flops = compute
        for job in jobs:
            message = request.jobs.add(
                name=job.name,
                law=pb.LawSelector(family=job.family, form=job.form, version=job.version),
            )
            for name in ("weight", "min_flops", "max_flops", "max_params", "max_tokens"):
                value = getattr(job, name)
                if value is not None:
                    setattr(message, name, value)
        reply = self._call("AllocateBudget", request)
        return results.Allocation(
            jobs=[
                results.JobAllocation(
                    name=j.name,
                    flops=j.flops,
                    params=j.params,
                    tokens=j.tokens,
                    loss=j.loss,
                    binding=list(j.binding),
                    marginal_value=j.marginal_value,
                    law=_law_info(j.law),
                    intervals=_bands(j.intervals),
                )
                for j in reply.jobs
            ],
            marginal_value=reply.marginal_value,
            objective=reply.objective,
            budget_binding=reply.budget_binding,
            solver=reply.solver,
        )

    def plan_compute_optimal(
        self,
        family: str,
        compute: float | None = None,
        accelerator_hours: float | None = None,
        peak_flops_per_second: float | None = None,
        mfu: float | None = None,
        target_loss: float | None = None,
        max_params: float | None = None,
        max_tokens: float | None = None,
        unique_tokens: float | None = None,
        max_epochs: float | None = None,
        form: str = "",
        version: int = 0,
        hardware: results.Hardware | None = None,
        hyperparameter_law: str | results.LawSelector | None = None,
        target_accuracy: tuple[str, float] | None = None,
    ) -> results.ComputeOptimalPlan:
        """Give exactly one goal: compute (FLOPs), accelerator_hours (+ peak and MFU),
        target_loss or target_accuracy ((task, accuracy) through the family's task law: the
        plan's loss is then that task's loss). With `hardware` the answer has `training`:
        learning rate and batch from `hyperparameter_law` (a family name or selector; default
        step-law-2025), steps, time and cost."""
        request = pb.PlanComputeOptimalRequest(
            law=pb.LawSelector(family=family, form=form, version=version)
        )
        if compute is not None:
            request.budget.flops = compute
        elif accelerator_hours is not None:
            request.budget.accelerator.accelerator_hours = accelerator_hours
            request.budget.accelerator.peak_flops_per_second = peak_flops_per_second or 0.0
            request.budget.accelerator.mfu = mfu or 0.0
        elif target_loss is not None:
            request.target_loss = target_loss
        elif target_accuracy is not None:
            request.target_accuracy.task, request.target_accuracy.accuracy = target_accuracy
        for name, value in (
            ("max_params", max_params),
            ("max_tokens", max_tokens),
            ("unique_tokens", unique_tokens),
            ("max_epochs", max_epochs),
        ):
            if value is not None:
                setattr(request, name, value)
        _set_hardware(request, hardware, hyperparameter_law)
        reply = self._call("PlanComputeOptimal", request)
        return results.ComputeOptimalPlan(
            params=reply.params,
            tokens=reply.tokens,
            loss=reply.loss,
            flops=reply.flops,
            tokens_per_param=reply.tokens_per_param,
            binding=list(reply.binding),
            intervals=_bands(reply.intervals),
            solver=reply.solver,
            law=_law_info(reply.law),
            epochs=reply.epochs if reply.HasField("epochs") else None,
            training=_training(reply),
        )

    def plan_compute_optimal_batch(
        self,
        family: str,
        budgets: ArrayLike | None = None,
        target_losses: ArrayLike | None = None,
        max_params: float | None = None,
        max_tokens: float | None = None,
        unique_tokens: float | None = None,
        max_epochs: float | None = None,
        form: str = "",
        version: int = 0,
        timeout: float | None = None,
    ) -> results.ComputeOptimalBatch:
        """plan_compute_optimal for many budgets (FLOPs) or many loss targets (give exactly one)
        under the same caps, in one call: each row's answer is the single call's."""
        request = pb.PlanComputeOptimalBatchRequest(
            law=pb.LawSelector(family=family, form=form, version=version),
            budgets=_doubles(budgets) if budgets is not None else [],
            target_losses=_doubles(target_losses) if target_losses is not None else [],
        )
        for name, value in (
            ("max_params", max_params),
            ("max_tokens", max_tokens),
            ("unique_tokens", unique_tokens),
            ("max_epochs", max_epochs),
        ):
            if value is not None:
                setattr(request, name, value)
        reply = self._call("PlanComputeOptimalBatch", request, timeout)
        return results.ComputeOptimalBatch(
            params=_array(reply.params),
            tokens=_array(reply.tokens),
            loss=_array(reply.loss),
            flops=_array(reply.flops),
            binding=[tags.split(",") if tags else [] for tags in reply.binding],
            solver=list(reply.solver),
            law=_law_info(reply.law),
        )

    def predict_batch(
        self,
        family: str,
        params: ArrayLike,
        tokens: ArrayLike,
        unique_tokens: ArrayLike | None = None,
        with_band: bool = False,
        form: str = "",
        version: int = 0,
        timeout: float | None = None,
    ) -> results.PredictionBatch:
        """predict for many (params[i], tokens[i]) points in one call; `with_band` adds each
        point's 95% band (the law version needs a bootstrap ensemble)."""
        request = pb.PredictBatchRequest(
            law=pb.LawSelector(family=family, form=form, version=version),
            params=_doubles(params),
            tokens=_doubles(tokens),
            unique_tokens=_doubles(unique_tokens) if unique_tokens is not None else [],
            with_band=with_band,
        )
        reply = self._call("PredictBatch", request, timeout)
        return results.PredictionBatch(
            loss=_array(reply.loss),
            low=_array(reply.low) if with_band else None,
            high=_array(reply.high) if with_band else None,
            law=_law_info(reply.law),
        )

    def fit_task_law(
        self,
        family: str,
        task: str,
        loss_metric: str,
        accuracy_metric: str,
        chance: float | None = None,
        skip_fraction: float | None = None,
        window: int | None = None,
        bootstrap: int | None = None,
        seed: int = 0,
        make_current: bool | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> results.Law:
        """Fit a task law (stored as form "task_link:<task>") to the runs' metrics: step 1 the
        task loss of (N, D) on each run's end, step 2 the sigmoid link on its checkpoints."""
        options = pb.TaskFitOptions(
            name=task, loss_metric=loss_metric, accuracy_metric=accuracy_metric
        )
        for name, value in (("chance", chance), ("skip_fraction", skip_fraction),
                            ("window", window)):  # fmt: skip
            if value is not None:
                setattr(options, name, value)
        return self.fit_law(
            family, "auto", bootstrap, seed, "task_link", on_progress=on_progress,
            make_current=make_current, task=options,
        )  # fmt: skip

    def predict_task(
        self, family: str, task: str, params: float, tokens: float, version: int = 0
    ) -> results.TaskPrediction:
        """Predicted accuracy (and task loss) on `task` of N params trained on D tokens."""
        request = pb.PredictTaskRequest(
            law=pb.LawSelector(family=family, version=version),
            task=task,
            params=params,
            tokens=tokens,
        )
        reply = self._call("PredictTask", request)
        return results.TaskPrediction(
            accuracy=reply.accuracy,
            task_loss=reply.task_loss,
            interval=(reply.interval.low, reply.interval.high)
            if reply.HasField("interval")
            else None,
            floor=reply.floor,
            ceiling=reply.ceiling,
            noisy=reply.noisy,
            law=_law_info(reply.law),
        )

    def predict_curve(
        self,
        family: str,
        schedules: Iterable[pb.Schedule],
        steps: ArrayLike | None = None,
        points: int = 0,
        form: str = "",
        version: int = 0,
        timeout: float | None = None,
    ) -> CurvePredictions:
        """Loss curves of 1-16 schedules (named_schedule, rates_schedule) under the family's
        loss-curve law: at `steps` (1-based, the same for all), else `points` evenly spaced
        steps (1,000 when 0)."""
        request = pb.PredictCurveRequest(
            law=pb.LawSelector(family=family, form=form, version=version),
            schedules=list(schedules),
            steps=np.asarray(steps, dtype=np.int64).ravel().tolist() if steps is not None else [],
            points=points,
        )
        reply = self._call("PredictCurve", request, timeout)
        return CurvePredictions([_curve(c) for c in reply.curves], _law_info(reply.law))

    def plan_schedule(
        self,
        family: str,
        total_steps: int,
        peak_lr: float,
        floor_lr: float,
        warmup_steps: int,
        mode: str = "wsd_decay",
        decay_shape: str = "",
        points: int = 0,
        form: str = "",
        version: int = 0,
        timeout: float | None = None,
    ) -> SchedulePlan:
        """The best WSD decay fraction (mode "wsd_decay", for `decay_shape`) or the loss-optimal
        non-increasing schedule (mode "optimal"), each against cosine."""
        request = pb.PlanScheduleRequest(
            law=pb.LawSelector(family=family, form=form, version=version),
            mode=mode,
            total_steps=total_steps,
            peak_lr=peak_lr,
            floor_lr=floor_lr,
            warmup_steps=warmup_steps,
            decay_shape=decay_shape,
            points=points,
        )
        reply = self._call("PlanSchedule", request, timeout or FIT_TIMEOUT)
        return SchedulePlan(
            schedule=reply.schedule,
            final_loss=reply.final_loss,
            cosine_final_loss=reply.cosine_final_loss,
            gain_over_cosine=reply.gain_over_cosine,
            decay_fraction=reply.decay_fraction if reply.HasField("decay_fraction") else None,
            curve=_curve(reply.curve),
            cosine_curve=_curve(reply.cosine_curve),
            solver=reply.solver,
            law=_law_info(reply.law),
        )


def _bands(intervals: Any) -> dict[str, results.Band]:
    """A plan's p5/p50/p95 bands (the server sets the median of every plan interval)."""
    return {name: results.Band(v.low, v.median, v.high) for name, v in intervals.items()}


def _lifetime(plan: pb.LifetimePlan) -> results.LifetimePlan:
    return results.LifetimePlan(
        params=plan.params,
        tokens=plan.tokens,
        loss=plan.loss,
        training_flops=plan.training_flops,
        inference_flops=plan.inference_flops,
        total_flops=plan.total_flops,
        tokens_per_param=plan.tokens_per_param,
        cost=plan.cost,
    )


# The only form a hyperparameter law has: a selector without one means it.
STEP_LAW_FORM = "step_law"
PlanWithHardware = (
    pb.PlanComputeOptimalRequest
    | pb.PlanInferenceRequest
    | pb.PlanOvertrainingRequest
    | pb.PlanSparsityRequest
)
PlanReply = (
    pb.PlanComputeOptimalResponse
    | pb.PlanInferenceResponse
    | pb.PlanOvertrainingResponse
    | pb.PlanSparsityResponse
)


def _hardware(hardware: results.Hardware) -> pb.HardwareProfile:
    message = pb.HardwareProfile(
        accelerators=hardware.accelerators,
        peak_flops_per_second=hardware.peak_flops_per_second,
        mfu=hardware.mfu,
    )
    # Optional fields: unset means no price / the Step Law's batch, so 0 is never sent for None.
    if hardware.price_per_accelerator_hour is not None:
        message.price_per_accelerator_hour = hardware.price_per_accelerator_hour
    if hardware.batch_tokens is not None:
        message.batch_tokens = hardware.batch_tokens
    return message


def _set_hardware(
    request: PlanWithHardware,
    hardware: results.Hardware | None,
    hyperparameter_law: str | results.LawSelector | None,
) -> None:
    if hardware is not None:
        request.hardware.CopyFrom(_hardware(hardware))
    if hyperparameter_law is not None:
        # Sent even without hardware, so that the server says it needs one.
        law = (
            results.LawSelector(hyperparameter_law)
            if isinstance(hyperparameter_law, str)
            else hyperparameter_law
        )
        request.hyperparameter_law.CopyFrom(
            pb.LawSelector(family=law.family, form=law.form or STEP_LAW_FORM, version=law.version)
        )


def _training(reply: PlanReply) -> results.TrainingSetup | None:
    if not reply.HasField("training"):
        return None
    setup = reply.training
    check = setup.critical_batch
    return results.TrainingSetup(
        learning_rate=setup.learning_rate,
        batch_tokens=setup.batch_tokens,
        steps=setup.steps,
        wall_clock_hours=setup.wall_clock_hours,
        accelerator_hours=setup.accelerator_hours,
        cost=setup.cost if setup.HasField("cost") else None,
        hyperparameter_law=_law_info(setup.hyperparameter_law),
        critical_batch=(
            results.CriticalBatchCheck(
                loss=check.loss,
                critical_batch_tokens=check.critical_batch_tokens,
                step_penalty=check.step_penalty,
                token_penalty=check.token_penalty,
                exceeds_critical=check.exceeds_critical,
            )
            if setup.HasField("critical_batch")
            else None
        ),
    )


def _comparison(reply: pb.CompareLawsResponse) -> results.Comparison:
    return results.Comparison(
        crossovers=list(reply.crossovers),
        ranges=[results.WinnerRange(r.low, r.high, r.winner) for r in reply.ranges],
        multipliers=[
            results.MultiplierAt(
                m.budget,
                m.first_loss,
                m.multiplier,
                results.Band(m.interval.low, m.interval.median, m.interval.high)
                if m.HasField("interval")
                else None,
            )
            for m in reply.multipliers
        ],
        first_family=reply.first_law.family,
        first_law=_law_info(reply.first_law),
        second_family=reply.second_law.family,
        second_law=_law_info(reply.second_law),
        axis_values=list(reply.axis_values),
        first_loss=list(reply.first_loss),
        second_loss=list(reply.second_loss),
    )
