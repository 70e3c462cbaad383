"""Fits a caller can trust (issue 9) on a real server: checkpoints, warnings that keep a law
from becoming current, borrowed and fixed parameters, method auto, run deletion and refusals of
runs that would break every later fit. Raw stubs, so the checks are of the wire contract."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.service.server_process import ServerProcess

# Epoch's published refit of Chinchilla (LAWS.md §11.2), the law the synthetic ladders follow.
E, A, B, ALPHA, BETA = 1.8172, 482.01, 2085.43, 0.3478, 0.3658
SIZES = np.geomspace(5e7, 2e9, 6)
MULTIPLIERS = (10.0, 20.0, 40.0)  # tokens per parameter
FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # checkpoints along each run
# Mid-run checkpoints sit above the annealed curve (the learning rate has not decayed yet).
UNANNEALED = 0.03


def law(n: float, d: float, e: float = E) -> float:
    return e + A / n**ALPHA + B / d**BETA


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[rpc.PlannerServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield rpc.PlannerServiceStub(channel)


def ladder(e: float = E) -> list[pb.Run]:
    """Runs with four checkpoints each; only the last lies on the law."""
    runs = []
    for i, n in enumerate(SIZES):
        for m in MULTIPLIERS:
            total = m * n
            for step, fraction in enumerate(FRACTIONS, start=1):
                d = fraction * total
                bump = 0.0 if fraction == 1.0 else UNANNEALED * (1.0 - fraction)
                runs.append(
                    pb.Run(
                        run_id=f"r{i}-{m:g}", step=step * 1000, params=float(n), tokens=d,
                        loss=law(n, d, e) * (1 + bump),
                    )
                )  # fmt: skip
    return runs


def create(stub: rpc.PlannerServiceStub, family: str, runs: list[pb.Run]) -> None:
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family)))
    stub.AddRuns(pb.AddRunsRequest(family=family, runs=runs))


def fit(stub: rpc.PlannerServiceStub, **fields: object) -> pb.Law:
    events = list(stub.FitLaw(pb.FitLawRequest(**fields)))  # type: ignore[arg-type]
    assert events[-1].HasField("law")
    return events[-1].law


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code(), caught.value.details()


def test_final_checkpoints_recover_the_law_and_all_checkpoints_do_not(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create(stub, family_name, ladder())
    final = fit(stub, family=family_name, method="vpnls", bootstrap=0)
    assert final.diagnostics.runs == 18 and final.diagnostics.training_runs == 18
    assert len(final.run_ids) == 18 and final.options["checkpoints"] == "final"
    for name, value in (("E", E), ("alpha", ALPHA), ("beta", BETA)):
        assert final.parameters[name] == pytest.approx(value, rel=1e-4), name
    every = fit(
        stub, family=family_name, method="vpnls", bootstrap=0,
        options=pb.FitOptions(checkpoints="all"),
    )  # fmt: skip
    assert every.diagnostics.runs == 72 and every.diagnostics.training_runs == 18
    assert abs(every.parameters["E"] / E - 1) > 1e-3  # the unannealed checkpoints bias it
    tail = fit(
        stub, family=family_name, method="vpnls", bootstrap=0,
        options=pb.FitOptions(checkpoints="after_fraction", after_fraction=0.7),
    )  # fmt: skip
    assert tail.diagnostics.runs == 36  # the 0.75 and 1.0 checkpoints of each run


def test_resamples_draw_whole_runs(stub: rpc.PlannerServiceStub, family_name: str) -> None:
    create(stub, family_name, ladder())
    law_ = fit(
        stub, family=family_name, method="vpnls", bootstrap=12, seed=1,
        options=pb.FitOptions(checkpoints="all"),
    )  # fmt: skip
    assert law_.ensemble_size + law_.diagnostics.failed_resamples == 12


def test_checkpoints_are_keyed_by_run_and_step(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    runs = ladder()
    create(stub, family_name, runs)
    changed = pb.Run()
    changed.CopyFrom(runs[1])
    changed.loss *= 1.01
    code, message = code_of(
        lambda: stub.AddRuns(pb.AddRunsRequest(family=family_name, runs=[changed]))
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS and "step 2000" in message
    again = stub.AddRuns(pb.AddRunsRequest(family=family_name, runs=runs[:5]))
    assert (again.added, again.unchanged) == (0, 5)


def test_a_fit_on_a_bound_is_stored_but_not_made_current(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create(stub, family_name, ladder(e=0.0))  # VPNLS's NNLS puts E exactly on its bound 0
    stub.PutLaw(
        pb.PutLawRequest(
            family=family_name, form="chinchilla",
            parameters={"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA},
        )
    )  # fmt: skip
    held = fit(stub, family=family_name, method="vpnls", bootstrap=0)
    assert held.version == 2 and not held.current
    assert "E" in held.diagnostics.on_bound
    assert any(w.startswith("E ") for w in held.diagnostics.warnings)
    current = stub.GetLaw(pb.GetLawRequest(family=family_name, form="chinchilla")).law
    assert current.version == 1 and current.current
    family = stub.GetFamily(pb.GetFamilyRequest(name=family_name)).family
    assert [(s.form, s.version) for s in family.laws] == [("chinchilla", 1)]
    forced = fit(stub, family=family_name, method="vpnls", bootstrap=0, make_current=True)
    assert forced.version == 3 and forced.current
    promoted = stub.SetCurrentLaw(
        pb.SetCurrentLawRequest(family=family_name, form="chinchilla", version=2)
    ).law
    assert promoted.version == 2 and promoted.current
    versions = stub.ListLawVersions(pb.ListLawVersionsRequest(family=family_name)).laws
    assert [v.current for v in versions] == [False, True, False]
    code, _ = code_of(
        lambda: stub.SetCurrentLaw(
            pb.SetCurrentLawRequest(family=family_name, form="chinchilla", version=9)
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_only_withheld_versions_leave_no_current_law(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create(stub, family_name, ladder(e=0.0))
    fit(stub, family=family_name, method="vpnls", bootstrap=0)
    code, message = code_of(lambda: stub.GetLaw(pb.GetLawRequest(family=family_name)))
    assert code == grpc.StatusCode.NOT_FOUND and "not made current" in message
    pinned = stub.GetLaw(pb.GetLawRequest(family=family_name, version=1)).law
    assert not pinned.current


def test_borrowed_and_fixed_parameters_are_held(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create(stub, family_name, ladder())
    borrowed = fit(
        stub, family=family_name, method="huber", bootstrap=0,
        options=pb.FitOptions(
            borrow_from=pb.LawSelector(family="chinchilla-epoch-2024"), borrow=["alpha", "beta"]
        ),
    )  # fmt: skip
    # Epoch's published exponents (the catalogue's chinchilla-epoch-2024 version 1).
    assert borrowed.parameters["alpha"] == 0.3478 and borrowed.parameters["beta"] == 0.3658
    assert "chinchilla-epoch-2024 chinchilla v1" in borrowed.options["borrowed_from"]
    pinned = fit(
        stub, family=family_name, method="vpnls", bootstrap=0,
        options=pb.FitOptions(fixed={"E": 1.9}),
    )  # fmt: skip
    assert pinned.parameters["E"] == 1.9 and pinned.options["fixed.E"] == "1.9"
    code, message = code_of(
        lambda: fit(
            stub, family=family_name,
            options=pb.FitOptions(fixed={"alpha": 0.3}, borrow_from=pb.LawSelector(
                family="chinchilla-epoch-2024"), borrow=["alpha"]),
        )
    )  # fmt: skip
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "options.borrow" in message


def test_auto_is_the_default_and_reports_every_candidate(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    rng = np.random.default_rng(5)
    runs = [r for r in ladder() if r.step == 4000]
    for run in runs:
        run.loss *= float(np.exp(rng.normal(scale=0.005)))
    create(stub, family_name, runs)
    law_ = fit(stub, family=family_name, bootstrap=0)
    choice = law_.diagnostics.auto
    labels = [c.candidate for c in choice.candidates]
    variants = ("vpnls", "huber", "huber+penalty2", "huber+penalty5")
    tied = [v.replace("huber", "huber+tied").replace("vpnls", "vpnls+tied") for v in variants]
    assert sorted(labels) == sorted([*variants, *tied])
    assert choice.folds >= 1 and law_.options["method_requested"] == "auto"
    scored = {c.candidate: c.mean_abs_relative_error for c in choice.candidates if not c.failure}
    assert choice.chosen == min(scored, key=scored.__getitem__)
    assert law_.source.method == choice.chosen.split("+")[0]


@pytest.mark.parametrize(
    ("run", "field"),
    [
        (pb.Run(run_id="x", params=1e9, tokens=2e10, loss=1e200), "runs[0].loss"),
        (pb.Run(run_id="x", params=5e-324, tokens=2e10, loss=2.0), "runs[0].params"),
        (pb.Run(run_id="x", params=1e9, tokens=1e300, loss=2.0), "runs[0].tokens"),
        (pb.Run(run_id="x", params=1e9, tokens=2e10, loss=2.0, flops=1e300), "runs[0].flops"),
        (pb.Run(run_id="x", params=1e9, tokens=2e10, loss=2.0, weight=0.0), "runs[0].weight"),
    ],
)
def test_runs_that_would_overflow_a_fit_are_refused(
    stub: rpc.PlannerServiceStub, family_name: str, run: pb.Run, field: str
) -> None:
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family_name)))
    code, message = code_of(lambda: stub.AddRuns(pb.AddRunsRequest(family=family_name, runs=[run])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith(field)
    family = stub.GetFamily(pb.GetFamilyRequest(name=family_name)).family
    assert family.run_count == 0


def test_delete_runs_removes_every_checkpoint_or_nothing(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create(stub, family_name, ladder())
    code, message = code_of(
        lambda: stub.DeleteRuns(pb.DeleteRunsRequest(family=family_name, run_ids=["r0-10", "nope"]))
    )
    assert code == grpc.StatusCode.NOT_FOUND and "'nope'" in message
    assert stub.GetFamily(pb.GetFamilyRequest(name=family_name)).family.run_count == 72
    done = stub.DeleteRuns(pb.DeleteRunsRequest(family=family_name, run_ids=["r0-10", "r1-20"]))
    assert done.deleted == 2 * len(FRACTIONS) and done.family.run_count == 72 - 8
    code, _ = code_of(lambda: stub.DeleteRuns(pb.DeleteRunsRequest(family=family_name)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def violation_fields(error: grpc.RpcError) -> list[str]:
    """Field names of the google.rpc.BadRequest detail."""
    from google.rpc import error_details_pb2, status_pb2

    trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    fields = []
    for detail in status.details:
        request = error_details_pb2.BadRequest()
        if detail.Unpack(request):
            fields += [v.field for v in request.field_violations]
    return fields


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (pb.FitOptions(fixed={"E": 1e300}), "options.fixed.E"),
        (pb.FitOptions(fixed={"A": 1e308}), "options.fixed.A"),
        (pb.FitOptions(fixed={"Q": 1.0}), "options.fixed.Q"),
        (pb.FitOptions(overestimate_penalty=-1.0), "options.overestimate_penalty"),
        (pb.FitOptions(checkpoints="latest"), "options.checkpoints"),
        (pb.FitOptions(checkpoints="after_fraction", after_fraction=2.0), "options.after_fraction"),
        (pb.FitOptions(borrow=["alpha"]), "options.borrow"),
        (
            pb.FitOptions(borrow_from=pb.LawSelector(family="chinchilla-epoch-2024"), borrow=["x"]),
            "options.borrow[0]",
        ),
        (pb.FitOptions(borrow_from=pb.LawSelector(form="magic")), "options.borrow_from.family"),
    ],
)
def test_bad_fit_options_name_their_field(
    stub: rpc.PlannerServiceStub, family_name: str, options: pb.FitOptions, field: str
) -> None:
    create(stub, family_name, ladder())
    for method in ("vpnls", "auto"):
        with pytest.raises(grpc.RpcError) as caught:
            fit(stub, family=family_name, method=method, bootstrap=0, options=options)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert violation_fields(caught.value) == [field]


def test_borrowing_from_a_missing_or_unsuitable_law_is_refused(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create(stub, family_name, ladder())
    missing = pb.FitOptions(borrow_from=pb.LawSelector(family="no-such-family"))
    code, message = code_of(lambda: fit(stub, family=family_name, options=missing))
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-family" in message
    stub.PutLaw(
        pb.PutLawRequest(
            family=family_name, form="bnsl_params", parameters={"a": 1.0, "b": 10.0, "c0": 0.1}
        )
    )
    curve = pb.FitOptions(borrow_from=pb.LawSelector(family=family_name, form="bnsl_params"))
    code, message = code_of(lambda: fit(stub, family=family_name, options=curve))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no Chinchilla" in message


def test_checkpoints_must_share_their_runs_params(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create(stub, family_name, ladder())
    odd = [
        pb.Run(run_id="new", step=1, params=1e8, tokens=1e9, loss=3.0),
        pb.Run(run_id="new", step=2, params=2e8, tokens=2e9, loss=2.9),
    ]
    code, message = code_of(lambda: stub.AddRuns(pb.AddRunsRequest(family=family_name, runs=odd)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("runs[1].params")
    stored = ladder()[0]  # r0-10 is stored with params 5e7
    other = pb.Run(run_id=stored.run_id, step=99_000, params=6e7, tokens=1e10, loss=2.5)
    code, message = code_of(
        lambda: stub.AddRuns(pb.AddRunsRequest(family=family_name, runs=[other]))
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS and "params" in message
    tiny = pb.Run(run_id="w", params=1e8, tokens=1e9, loss=3.0, weight=1e-310)
    code, _ = code_of(lambda: stub.AddRuns(pb.AddRunsRequest(family=family_name, runs=[tiny])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_few_runs_with_many_checkpoints_cannot_fit(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    rows = [r for r in ladder() if r.run_id in ("r0-10", "r3-20", "r5-40")]  # 3 runs, 12 rows
    create(stub, family_name, rows)
    code, message = code_of(
        lambda: fit(stub, family=family_name, method="vpnls", bootstrap=0,
                    options=pb.FitOptions(checkpoints="all"))
    )  # fmt: skip
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "3 training runs" in message


def test_auto_on_a_small_family_says_why_and_stays_current(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    rows = [r for r in ladder() if r.step == 4000][:8]  # 8 runs: too few to hold any out
    create(stub, family_name, rows)
    law_ = fit(stub, family=family_name, bootstrap=0)
    assert law_.current and not law_.diagnostics.warnings
    assert law_.diagnostics.auto.folds == 0 and "too few" in law_.diagnostics.auto.note
    assert law_.source.method == "huber"


def test_an_empty_family_has_nothing_to_fit(stub: rpc.PlannerServiceStub, family_name: str) -> None:
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family_name)))
    for form in ("chinchilla", "bnsl_compute"):
        code, message = code_of(lambda form=form: fit(stub, family=family_name, form=form))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no runs" in message
