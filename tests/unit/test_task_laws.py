"""Two-step task scaling laws (planner.tasks) against the OLMo ladder paper (Bhagia et al. 2024,
arXiv 2412.04403) and the figures its authors released with their code (allenai/OLMo-ladder
src/scripts/paper/figures/*.csv @4d99344):

- chained_main.csv: the chained 13B-5T predictions (also in shared/data/README.md) and the
  13B-5T observed accuracies; step1_main.csv / step2_main.csv: each step alone at 13B-5T.
- variance.csv: the spread over the last 10 checkpoints of 1B-10xC, and the 7B-4T chained
  relative errors ("7B Stacked Rel Error").
- the abstract (v1): within 2 points on four tasks for both targets; "average absolute error
  6.9" on the four others. Which four is not in the abstract: the released errors make them
  MMLU, HellaSwag, PIQA and Social IQa (ARC-Easy is off by 8-10 points at both targets).

Every fit here is on the 16 runs final.json marks "train" (190M-1.3B at 1, 2, 5, 10 xC; not
0.5xC, not the reruns), with final.json's `n`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.laws import ChinchillaLaw
from planner.planning.compute_optimal import plan_for_target_loss
from planner.tasks import (
    MAIN_TASKS,
    TASKS,
    VARIANCE_TASKS,
    CheckpointSpread,
    RunCheckpoints,
    SigmoidLink,
    TaskScalingLaw,
    checkpoint_spread,
    final_point,
    fit_sigmoid_link,
    fit_task_loss_law,
    fit_task_scaling_law,
    link_points,
    moving_average,
    noisy_tasks,
    task,
)
from tests.unit import olmo_ladder_data as data

# predict.py's -n / -d for the two targets (the paper's README commands).
TARGET_13B = (13202396160, 5000088518656)
TARGET_7B = (6887575552, 3945065873408)

# chained_main.csv: Pred (chained 13B-5T accuracy) and Actual (observed 13B-5T accuracy).
CHAINED_13B = {
    "mmlu_avg_test": (0.5126799915287485, 0.5161402368605137),
    "hellaswag_val": (0.8530359563499285, 0.831905996799469),
    "arc_challenge_test": (0.5267099358093748, 0.638054609298706),
    "arc_easy_test": (0.7724156000459201, 0.8717171669006347),
    "piqa_val": (0.820804177694882, 0.8295973896980285),
    "csqa_val": (0.7760887505172276, 0.7410319447517395),
    "socialiqa_val": (0.5994822062474122, 0.6159672379493714),
    "openbookqa_test": (0.4486477676972386, 0.4863999903202057),
}
# step1_main.csv: Pred (step-1 task loss at 13B-5T, bpb) and Actual (observed 13B-5T task
# loss, mean of its last 5 checkpoints); step2_main.csv: Pred (the link at that observed loss).
STEP1_13B = {
    "mmlu_avg_test": (0.7501562439156164, 0.7488274373888968),
    "hellaswag_val": (0.6531765996418648, 0.6609338879585266),
    "arc_challenge_test": (0.783323889494342, 0.7157248377799987),
    "arc_easy_test": (0.5931045976220826, 0.5113906025886535),
    "piqa_val": (0.8747948863685431, 0.8987890243530273),
    "csqa_val": (0.6617282976368006, 0.8115828037261963),
    "socialiqa_val": (0.9915736909585439, 0.9568508267402649),
    "openbookqa_test": (1.2750065398700043, 1.2631986379623412),
}
STEP2_13B = {
    "mmlu_avg_test": 0.5137559254977586,
    "hellaswag_val": 0.8415671300246522,
    "arc_challenge_test": 0.6030242849964447,
    "arc_easy_test": 0.8193835327090995,
    "piqa_val": 0.8074608283959512,
    "csqa_val": 0.7172756908394468,
    "socialiqa_val": 0.6337470338620458,
    "openbookqa_test": 0.4572227807036213,
}
# variance.csv: Loss SD, Loss Rel SD (CV), Accuracy SD, Accuracy Rel SD (CV), 7B Stacked Rel
# Error (|chained 7B-4T accuracy - observed| / observed).
VARIANCE = {
    "winogrande_val": (0.011522071406109436, 0.0074804962541238276, 0.004791184179455873,
                       0.007669526714641651, None),
    "boolq_val": (0.006783761411502156, 0.017624244294290384, 0.01859571327181338,
                  0.028557733868881236, None),
    "csqa_val": (0.005564045134935118, 0.005559557847137713, 0.003497816587469373,
                 0.005529303556972804, 0.04221811145083337),
    "openbookqa_test": (0.00472684964157779, 0.003415351866876424, 0.009509995901628328,
                        0.025118848040388397, 0.10589475356766166),
    "arc_easy_test": (0.004529993360286306, 0.006575982918040568, 0.004325203518726066,
                      0.006125459546604391, 0.09420679479501395),
    "arc_challenge_test": (0.003664131146804138, 0.004039272531432547, 0.003973768869501623,
                           0.010017761026463895, 0.16868672599426734),
    "mmlu_avg_test": (0.002555160647712222, 0.0025925667326754404, 0.0009927395300182882,
                      0.0027583540024668117, 0.012842608791283672),
    "socialiqa_val": (0.002435141942176358, 0.002256528641194368, 0.0031980481971885873,
                      0.006081738403261787, 0.019784911327894384),
    "piqa_val": (0.0019476256974952956, 0.001948757593163689, 0.002364676385842031,
                 0.0031310965428856118, 0.01006155466577494),
    "hellaswag_val": (0.0006953498942577266, 0.0009151501974559638, 0.0015842241198201956,
                      0.002464223228676962, 0.014441533466868932),
}  # fmt: skip
WITHIN_2_POINTS = {"mmlu_avg_test", "hellaswag_val", "piqa_val", "socialiqa_val"}
MAIN_NAMES = [t.name for t in MAIN_TASKS]


@pytest.fixture(scope="module")
def laws(shared_data: Path) -> dict[str, TaskScalingLaw]:
    return {
        t.name: fit_task_scaling_law(data.training_runs(shared_data, t), chance=t.chance)
        for t in MAIN_TASKS
    }


def test_ladder_is_the_papers_sixteen_runs(shared_data: Path) -> None:
    runs = data.training_runs(shared_data, TASKS["piqa_val"])
    assert len(runs) == 16
    # 1, 2, 5, 10 x 20 tokens per parameter, to within the runs' rounding to whole batches.
    ratios = sorted({round(r.final_tokens / r.params / 20) for r in runs})
    assert ratios == [1, 2, 5, 10]


@pytest.mark.parametrize("name", MAIN_NAMES)
def test_step1_task_loss_at_13b_matches_authors(laws: dict[str, TaskScalingLaw], name: str) -> None:
    published, _ = STEP1_13B[name]
    assert laws[name].loss_law.loss(*TARGET_13B) == pytest.approx(published, abs=1e-4)


@pytest.mark.parametrize("name", MAIN_NAMES)
def test_step2_at_observed_13b_loss_matches_authors(
    laws: dict[str, TaskScalingLaw], name: str
) -> None:
    _, observed_loss = STEP1_13B[name]
    assert float(laws[name].link.accuracy(observed_loss)) == pytest.approx(
        STEP2_13B[name], abs=1e-4
    )


@pytest.mark.parametrize("name", MAIN_NAMES)
def test_chained_13b_5t_prediction_matches_published(
    laws: dict[str, TaskScalingLaw], name: str
) -> None:
    """All eight reproduce. 0.01 was the bar set; they agree to better than 1e-6, asserted at
    1e-4 to leave room for the optimiser's last digits on other BLAS / scipy builds."""
    published, _ = CHAINED_13B[name]
    assert laws[name].predict(*TARGET_13B).accuracy == pytest.approx(published, abs=1e-4)


@pytest.mark.parametrize("name", MAIN_NAMES)
def test_chained_7b_4t_against_observed_anneal(
    shared_data: Path, laws: dict[str, TaskScalingLaw], name: str
) -> None:
    """Within 2 points on the paper's four; on the other four (ARC-Challenge 10.4 points,
    ARC-Easy 8.0, OpenBookQA 5.2, CommonsenseQA 3.1 here) the method itself misses, as the
    paper reports. Either way the relative error is the one the authors published."""
    observed = TASKS[name].accuracy(data.anneal_row(shared_data))
    predicted = laws[name].predict(*TARGET_7B).accuracy
    relative = VARIANCE[name][4]
    assert relative is not None
    assert abs(predicted - observed) / observed == pytest.approx(relative, abs=1e-4)
    if name in WITHIN_2_POINTS:
        assert abs(predicted - observed) < 0.02
    else:
        assert abs(predicted - observed) > 0.02


def test_other_four_tasks_average_6_9_points(
    shared_data: Path, laws: dict[str, TaskScalingLaw]
) -> None:
    """Abstract (v1): "higher prediction error on four other tasks (average absolute error
    6.9)", over both targets; 13B-5T observed accuracies from chained_main.csv."""
    anneal = data.anneal_row(shared_data)
    errors = []
    for name in set(MAIN_NAMES) - WITHIN_2_POINTS:
        errors.append(abs(laws[name].predict(*TARGET_7B).accuracy - TASKS[name].accuracy(anneal)))
        errors.append(abs(laws[name].predict(*TARGET_13B).accuracy - CHAINED_13B[name][1]))
    assert round(100 * float(np.mean(errors)), 1) == 6.9


@pytest.mark.parametrize("name", sorted(VARIANCE))
def test_spread_over_last_10_checkpoints_matches_variance_table(
    shared_data: Path, name: str
) -> None:
    run = data.run_checkpoints(data.folder(shared_data) / "1B-10xC.csv", 1279395840, TASKS[name])
    spread = checkpoint_spread(run)
    loss_sd, loss_cv, acc_sd, acc_cv, _ = VARIANCE[name]
    assert spread.checkpoints == 10
    got = (spread.loss_sd, spread.loss_cv, spread.accuracy_sd, spread.accuracy_cv)
    assert got == pytest.approx((loss_sd, loss_cv, acc_sd, acc_cv), rel=1e-9)


def test_noisy_tasks_are_the_ones_predicted_worse() -> None:
    """The table's above-mean rule on the published CVs flags exactly the six tasks outside the
    paper's four well-predicted ones."""
    spreads = {name: CheckpointSpread(10, v[0], v[1], v[2], v[3]) for name, v in VARIANCE.items()}
    assert noisy_tasks(spreads) == set(VARIANCE) - WITHIN_2_POINTS


def test_fitted_law_carries_spread_of_largest_run(laws: dict[str, TaskScalingLaw]) -> None:
    spread = laws["piqa_val"].spread  # 1B-10xC is the ladder's run of most N * D
    assert spread is not None
    assert spread.loss_cv == pytest.approx(VARIANCE["piqa_val"][1], rel=1e-9)


def test_mmlu_is_the_question_weighted_mean_of_four_groups(shared_data: Path) -> None:
    row = data.anneal_row(shared_data)
    groups = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}
    hand = sum(
        w * row[f"eval/downstream/mmlu_{g}_test_rc_5shot_len_norm"] for g, w in groups.items()
    )
    assert TASKS["mmlu_avg_test"].accuracy(row) == pytest.approx(hand / sum(groups.values()))
    assert [t.name for t in VARIANCE_TASKS][-2:] == ["boolq_val", "winogrande_val"]
    assert TASKS["boolq_val"].accuracy_columns == ("eval/downstream/boolq_val_rc_5shot_acc",)


# --- the link's inverse ---------------------------------------------------------------------

HAND_LINK = SigmoidLink(a=-0.75, x0=0.6, k=5.0, b=1.0)


def test_inversion_hand_value() -> None:
    # acc = 0.5: a / (acc - b) - 1 = 1.5 - 1 = 0.5, so L = 0.6 - ln(0.5) / 5 = 0.738629436...
    assert HAND_LINK.task_loss_for(0.5) == pytest.approx(0.6 + math.log(2) / 5, rel=1e-12)
    assert HAND_LINK.task_loss_for(0.5) == pytest.approx(0.7386294361, abs=1e-10)
    # and forward: 1 - 0.75 * sigmoid(ln 2) = 1 - 0.75 * 2/3 = 0.5
    assert float(HAND_LINK.accuracy(0.6 + math.log(2) / 5)) == pytest.approx(0.5, rel=1e-12)


def test_inversion_round_trip_on_fitted_link(laws: dict[str, TaskScalingLaw]) -> None:
    law = laws["mmlu_avg_test"]
    loss = law.task_loss_for(0.60)
    assert float(law.link.accuracy(loss)) == pytest.approx(0.60, abs=1e-12)
    # Higher accuracy needs a lower loss; the 13B-5T chained accuracy maps back to its loss.
    assert law.task_loss_for(0.65) < loss
    target = law.predict(*TARGET_13B)
    assert law.task_loss_for(target.accuracy) == pytest.approx(target.task_loss, rel=1e-9)


@pytest.mark.parametrize(
    "accuracy",
    [
        1.0,  # at the ceiling b
        0.25,  # at the floor a + b
        0.1,  # below the floor
        # between acc(0) and b: needs a negative loss. acc(0) = 1 - 0.75 * sigmoid(-3)
        1 - 0.75 / (1 + math.exp(3)) + 1e-6,
    ],
)
def test_inversion_outside_range_is_infeasible(accuracy: float) -> None:
    with pytest.raises(Infeasible):
        HAND_LINK.task_loss_for(accuracy)


@pytest.mark.parametrize("accuracy", [math.nan, math.inf, -0.1, 1.5])
def test_inversion_rejects_bad_accuracy(accuracy: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        HAND_LINK.task_loss_for(accuracy)
    assert caught.value.field == "accuracy"


@pytest.mark.parametrize(
    ("field", "values"),
    [("a", (0.0, 0.6, 5.0, 1.0)), ("k", (-0.5, 0.6, 0.0, 1.0)), ("x0", (-0.5, math.nan, 5, 1))],
)
def test_link_rejects_wrong_sign_or_nan(field: str, values: tuple[float, ...]) -> None:
    with pytest.raises(InvalidInput) as caught:
        SigmoidLink(*values)
    assert caught.value.field == field


# --- checkpoint handling --------------------------------------------------------------------


def test_moving_average_warms_up_over_the_first_window() -> None:
    # window 3: 1, (1+2)/2, (1+2+3)/3, (2+3+4)/3, (3+4+5)/3
    np.testing.assert_allclose(moving_average([1, 2, 3, 4, 5], 3), [1, 1.5, 2, 3, 4])
    np.testing.assert_allclose(moving_average([4.0, 2.0], 5), [4, 3])


def test_step_points_skip_the_ceiling_of_the_fraction() -> None:
    run = RunCheckpoints.of(
        1e8, np.arange(1, 12) * 1e9, np.arange(11, 0, -1) / 10, np.linspace(0.3, 0.5, 11)
    )
    # ceil(0.1 * 11) = 2 checkpoints dropped; window 1 leaves the rest untouched.
    losses, accuracies = link_points(run, 0.1, 1)
    np.testing.assert_allclose(losses, np.arange(9, 0, -1) / 10)
    assert accuracies.size == 9
    # End point: tokens of the last checkpoint, mean of the last 3 losses (0.3, 0.2, 0.1).
    tokens, loss = final_point(run, 3)
    assert (tokens, loss) == pytest.approx((11e9, 0.2), rel=1e-12)


# --- bad inputs -----------------------------------------------------------------------------


def _run(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "params": 1e8,
        "tokens": [1e9, 2e9, 3e9],
        "task_loss": [1.2, 1.1, 1.0],
        "accuracy": [0.3, 0.32, 0.35],
    }
    return base | changes


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("params", {"params": 0.0}),
        ("params", {"params": math.nan}),
        ("tokens", {"tokens": [1e9, -2e9, 3e9]}),
        ("task_loss", {"task_loss": [1.2, math.inf, 1.0]}),
        ("accuracy", {"accuracy": [0.3, 1.2, 0.35]}),
        ("accuracy", {"accuracy": [0.3, 0.32]}),
        ("tokens", {"tokens": []}),
    ],
)
def test_run_rejects_bad_values(field: str, changes: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as caught:
        RunCheckpoints.of(**_run(**changes))  # type: ignore[arg-type]
    assert caught.value.field == field


def test_fits_reject_too_few_or_mismatched_points() -> None:
    with pytest.raises(InvalidInput) as caught:
        fit_task_loss_law([1e8] * 4, [1e9, 2e9, 3e9, 4e9], [1.0, 0.9, 0.8, 0.7])
    assert caught.value.field == "params"
    with pytest.raises(InvalidInput) as caught:
        # five rows but only two distinct (N, D) points: the law is not identified
        fit_task_loss_law([1e8] * 5, [1e9, 1e9, 1e9, 2e9, 2e9], [1.0, 0.9, 0.8, 0.7, 0.6])
    assert caught.value.field == "params"
    with pytest.raises(InvalidInput) as caught:
        fit_sigmoid_link([1.0, 0.9, 0.8, 0.7], [0.3, 0.35, 0.4], chance=0.25)
    assert caught.value.field == "accuracy"


@pytest.mark.parametrize(
    ("field", "chance", "ceiling"),
    [("chance", 1.0, 1.0), ("chance", -0.1, 1.0), ("ceiling", 0.5, 0.4), ("ceiling", 0.25, 1.5)],
)
def test_link_fit_rejects_bad_chance_or_ceiling(field: str, chance: float, ceiling: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        fit_sigmoid_link([1.0, 0.9, 0.8, 0.7], [0.3, 0.35, 0.4, 0.45], chance, ceiling)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("skip_fraction", {"skip_fraction": 1.0}), ("window", {"window": 0})],
)
def test_chain_fit_rejects_bad_options(field: str, kwargs: dict[str, float]) -> None:
    runs = [RunCheckpoints.of(**_run(params=p)) for p in (1e8, 2e8, 4e8, 8e8, 1.6e9)]  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as caught:
        fit_task_scaling_law(runs, chance=0.25, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_chain_prediction_rejects_bad_sizes(laws: dict[str, TaskScalingLaw]) -> None:
    with pytest.raises(InvalidInput) as caught:
        laws["piqa_val"].predict(0.0, 1e12)
    assert caught.value.field == "params"
    with pytest.raises(InvalidInput) as caught:
        laws["piqa_val"].predict(1e9, math.nan)
    assert caught.value.field == "tokens"


def test_unknown_task_and_single_task_spread_rejected() -> None:
    with pytest.raises(InvalidInput) as caught:
        task("lambada")
    assert caught.value.field == "task"
    with pytest.raises(InvalidInput):
        noisy_tasks({"piqa_val": CheckpointSpread(10, 0.1, 0.1, 0.1, 0.1)})


def test_accuracy_target_plans_through_the_step1_law(laws: dict[str, TaskScalingLaw]) -> None:
    """Step 1 is a ChinchillaLaw, so the planner's loss-target planning finds the least-compute
    (N, D) for the task loss the inverse link asks; that (N, D) then predicts the target."""
    law = laws["mmlu_avg_test"]
    assert isinstance(law.loss_law, ChinchillaLaw)
    plan = plan_for_target_loss(law.loss_law, law.task_loss_for(0.55))
    assert law.predict(plan.params, plan.tokens).accuracy == pytest.approx(0.55, abs=1e-6)
    # An accuracy whose task loss is at or below E is out of reach of any (N, D).
    unreachable = float(law.link.accuracy(law.loss_law.E * 0.99))
    with pytest.raises(Infeasible):
        plan_for_target_loss(law.loss_law, law.task_loss_for(unreachable))
