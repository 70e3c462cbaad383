"""A judged target of the benchmark and its table row: what was measured against what target,
and whether it was met (None: not measured in this run)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetRow:
    what: str
    target: str
    measured: str
    met: bool | None


def verdict(met: bool | None) -> str:
    if met is None:
        return "not measured"
    return "**met**" if met else "**missed**"


def target_table(rows: list[TargetRow]) -> list[str]:
    """The rows as a Markdown table: what, target, measured, verdict."""
    out = ["| what | target | measured | verdict |", "|---|---|---|---|"]
    out += [f"| {r.what} | {r.target} | {r.measured} | {verdict(r.met)} |" for r in rows]
    return out
