"""Plain records the store reads and writes; the servicer maps them to and from protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Operation states. A done operation never changes again; an INTERRUPTED one (its server shut
# down) waits for a server to claim it and queue it again.
QUEUED = "QUEUED"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
INTERRUPTED = "INTERRUPTED"
DONE_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
STATES = frozenset({QUEUED, RUNNING, INTERRUPTED}) | DONE_STATES


@dataclass(frozen=True)
class LawRef:
    """A family's current law of one form."""

    form: str
    version: int
    method: str


@dataclass(frozen=True)
class FamilyRecord:
    name: str
    description: str
    param_convention: str
    flops_per_param_token: float
    created_at: float
    updated_at: float
    revision: int
    laws: tuple[LawRef, ...] = ()
    run_count: int = 0
    # What the family's losses measure; "" when not said.
    metric: str = ""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    params: float
    tokens: float
    loss: float
    unique_tokens: float | None = None
    flops: float | None = None
    step: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Relative weight in fits; None means 1.
    weight: float | None = None
    # Learning rate at this checkpoint's step (a finished run: its peak) and batch size in
    # tokens; what the loss-curve laws and the Step Law are fitted to.
    lr: float | None = None
    batch_tokens: float | None = None
    # Named metrics of this row (e.g. a task's loss and accuracy at the checkpoint); empty when
    # it has none. What task laws are fitted to.
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int | None]:
        """What identifies the row in its family: checkpoints of one run share its run_id."""
        return self.run_id, self.step


@dataclass(frozen=True)
class FitRecord:
    """How a fitted law version was obtained and how good it is."""

    options: dict[str, str]
    run_ids: list[str]
    diagnostics: dict[str, Any]
    intervals: dict[str, list[float]]
    ensemble: list[list[float]]


@dataclass(frozen=True)
class LawRecord:
    family: str
    form: str
    version: int
    parameters: dict[str, float]
    method: str
    citation: str
    note: str
    created_at: float
    fit: FitRecord | None = None
    # Whether this is the family's current version of its form.
    current: bool = False


@dataclass(frozen=True)
class OperationRecord:
    """A long-running fit or backtest; its API name is "operations/<id>"."""

    id: str
    # The family's name, not a key: the history outlives a deleted family.
    family: str
    kind: str
    state: str
    # The serialized request, opaque to the store.
    request: bytes
    progress_stage: str
    progress_done: int
    progress_total: int
    # 1 at creation, plus one each time another server claims it.
    attempt: int
    # The server process that runs it.
    owner: str
    # The serialized result of kinds whose result is not a law version (e.g. a backtest).
    result: bytes | None
    # A fit's result: the law version it stored.
    law_form: str | None
    law_version: int | None
    error_code: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    heartbeat_at: float

    @property
    def done(self) -> bool:
        """Whether it finished (succeeded, failed or was cancelled) and will not change."""
        return self.state in DONE_STATES
