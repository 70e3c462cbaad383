"""The ladder paper's tasks: which OLMo evaluation columns feed each, and its chance level.

From OLMo-ladder src/scaling/utils.py (the "v2" task sets the paper uses). Task loss is
`eval/downstream_bpb/<task>_rc_5shot_bpb`; accuracy `eval/downstream/<task>_rc_5shot_len_norm`
(length-normalised ranked classification), except BoolQ's plain `_acc`. MMLU is the average of
its four subject groups' test splits weighted 0.215 / 0.335 / 0.219 / 0.231 (their WEIGHT_BY_KEY,
the groups' shares of questions), the same weights for loss and accuracy. Chance (their
task_minimum) is 0.25 unless listed; the ceiling (task_maximum) is 1 for every task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from planner.errors import InvalidInput


@dataclass(frozen=True)
class TaskColumns:
    """A task's evaluation columns, their averaging weights and its chance accuracy."""

    name: str
    display_name: str
    loss_columns: tuple[str, ...]
    accuracy_columns: tuple[str, ...]
    weights: tuple[float, ...]
    chance: float
    ceiling: float = 1.0

    def combine(self, row: Mapping[str, float], columns: tuple[str, ...]) -> float:
        """Weighted mean of `columns` in one evaluation row."""
        missing = [c for c in columns if c not in row]
        if missing:
            raise InvalidInput(missing[0], f"column missing for task {self.name!r}")
        total = sum(w * float(row[c]) for w, c in zip(self.weights, columns, strict=True))
        return total / sum(self.weights)

    def task_loss(self, row: Mapping[str, float]) -> float:
        return self.combine(row, self.loss_columns)

    def accuracy(self, row: Mapping[str, float]) -> float:
        return self.combine(row, self.accuracy_columns)


MMLU_WEIGHTS = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}


def _single(key: str, display_name: str, chance: float = 0.25) -> TaskColumns:
    metric = "acc" if key.startswith("boolq") else "len_norm"
    return TaskColumns(
        name=key,
        display_name=display_name,
        loss_columns=(f"eval/downstream_bpb/{key}_rc_5shot_bpb",),
        accuracy_columns=(f"eval/downstream/{key}_rc_5shot_{metric}",),
        weights=(1.0,),
        chance=chance,
    )


MMLU = TaskColumns(
    name="mmlu_avg_test",
    display_name="MMLU",
    loss_columns=tuple(f"eval/downstream_bpb/mmlu_{g}_test_rc_5shot_bpb" for g in MMLU_WEIGHTS),
    accuracy_columns=tuple(
        f"eval/downstream/mmlu_{g}_test_rc_5shot_len_norm" for g in MMLU_WEIGHTS
    ),
    weights=tuple(MMLU_WEIGHTS.values()),
    chance=0.25,
)

# The paper's eight (its Figure of chained predictions), in its order.
MAIN_TASKS: tuple[TaskColumns, ...] = (
    MMLU,
    _single("hellaswag_val", "HellaSwag"),
    _single("arc_challenge_test", "ARC-Challenge"),
    _single("arc_easy_test", "ARC-Easy"),
    _single("piqa_val", "PIQA", chance=0.5),
    _single("csqa_val", "CommonsenseQA", chance=0.2),
    _single("socialiqa_val", "Social IQa", chance=1 / 3),
    _single("openbookqa_test", "OpenBookQA"),
)
# The variance analysis adds two more.
VARIANCE_TASKS: tuple[TaskColumns, ...] = (
    *MAIN_TASKS,
    _single("boolq_val", "BoolQ", chance=0.5),
    _single("winogrande_val", "Winogrande", chance=0.5),
)
TASKS: dict[str, TaskColumns] = {task.name: task for task in VARIANCE_TASKS}


def task(name: str) -> TaskColumns:
    """Look a task up by its name (e.g. "piqa_val", "mmlu_avg_test")."""
    try:
        return TASKS[name]
    except KeyError:
        raise InvalidInput("task", f"unknown task {name!r}; known: {sorted(TASKS)}") from None
