"""A server's process tree read from /proc (Linux): the tests and benchmarks that watch its
workers start, compute, stop and die."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    ppid: int
    state: str
    cpu: float  # user + system CPU seconds
    nice: int  # fit workers run at nice 10, solver workers at 0


def read_proc(pid: int) -> Proc | None:
    """The process's /proc/<pid>/stat fields we use; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is parenthesised and may hold spaces; fields resume after its ')'.
    fields = text[text.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    return Proc(int(fields[1]), fields[0], cpu, int(fields[16]))


def alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    proc = read_proc(pid)
    return proc is not None and proc.state != "Z"


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, zombies included."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            proc = read_proc(int(entry.name))
            if proc is not None and proc.ppid == pid:
                found.append(int(entry.name))
    return found


def descendants(root: int) -> set[int]:
    """Every live process below `root` (children, grandchildren, ...)."""
    below: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            proc = read_proc(int(entry.name))
            if proc is not None and proc.state != "Z":
                below.setdefault(proc.ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in below.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def cpu_seconds(pid: int) -> float | None:
    proc = read_proc(pid)
    return None if proc is None else proc.cpu


def vm_rss(pid: int) -> int | None:
    """Resident set size in bytes; None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
