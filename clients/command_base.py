"""What every `planner` command shares: its output pair and its usage error."""

from __future__ import annotations

import argparse
from typing import Any

from clients import formatting as fmt
from clients.results import Band

Output = tuple[dict[str, Any], str]  # (JSON object, human-readable text)


class UsageError(Exception):
    """A problem with the command line itself."""


class StillRunning(Exception):
    """The wait for an operation was interrupted (Ctrl-C); the operation runs on."""

    def __init__(self, name: str) -> None:
        super().__init__(f"stopped waiting; {name} keeps running on the server")
        self.name = name

    def hints(self) -> list[str]:
        return follow_hints(self.name)


def follow_hints(name: str) -> list[str]:
    """How to wait for an operation, or stop it, from the command line."""
    return [
        f"  watch it:  planner operations watch {name}",
        f"  cancel it: planner operations cancel {name}",
    ]


def notice(args: argparse.Namespace, line: str) -> None:
    """A line for stderr ("warning: ...", "note: ..."), printed after the command's output, so
    that stdout keeps only the output (one JSON object with --json)."""
    vars(args).setdefault("notices", []).append(line)


def notices(args: argparse.Namespace) -> list[str]:
    return list(vars(args).get("notices", []))


def law_selector(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--form", default="", help="law form (default: the family's first)")
    parser.add_argument("--version", type=int, default=0, help="law version (default: current)")


def bands_json(bands: dict[str, Band]) -> dict[str, dict[str, float]]:
    return {name: {"p5": b.p5, "p50": b.p50, "p95": b.p95} for name, b in bands.items()}


def band_text(bands: dict[str, Band], name: str) -> str:
    """'  (p5 1.2e9 - p95 3.4e9)' for a field with a band, else ''."""
    band = bands.get(name)
    return f"  (p5 {fmt.number(band.p5)} - p95 {fmt.number(band.p95)})" if band else ""
