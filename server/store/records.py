"""Plain records the store reads and writes; the servicer maps them to and from protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
