"""What the numbers were measured on: CPU, cores, Python, package versions, time, commit."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGES = ("cvxpy", "clarabel", "grpcio", "numpy", "scipy", "protobuf", "SQLAlchemy")


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    logical_cpus: int
    usable_cpus: int
    load_average: tuple[float, float, float]
    python: str
    platform: str
    packages: dict[str, str]
    utc_time: str
    commit: str


def cpu_model() -> str:
    """The 'model name' line of /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit(repo: Path) -> str:
    """Short commit of the working tree, with '+dirty' when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def describe(repo: Path) -> Machine:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return Machine(
        cpu_model=cpu_model(),
        logical_cpus=os.cpu_count() or 1,
        usable_cpus=usable,
        load_average=os.getloadavg(),
        python=sys.version.split()[0] + f" ({platform.python_implementation()})",
        platform=platform.platform(),
        packages={name: package_version(name) for name in PACKAGES},
        utc_time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        commit=git_commit(repo),
    )
