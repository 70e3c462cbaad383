"""A short-lived, per-process cache of resolved laws, so queries skip the database.

Planning queries are read-mostly and must answer in well under a millisecond; a database round
trip costs several. Entries live `ttl` seconds (other replicas' writes become visible within
that time) and this process's own writes to a family evict its entries at once, so a caller
always reads its own writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from planner.laws import Law
from server.store.records import LawRecord

Key = tuple[str, str, int]  # (family, form or "" for the default, version or 0 for current)
T = TypeVar("T")
# Bound on each FreshEntries cache (laws other than final-loss ones: few per process).
MAX_FRESH_ENTRIES = 1_000


@dataclass(frozen=True)
class ResolvedLaw:
    """A stored law version, parsed, with the family's FLOPs per param per token and, for a
    fitted law, its bootstrap ensemble (columns as the form's, uncertainty.ENSEMBLE_COLUMNS)
    and the same rows as Chinchilla parameters (E, A, B, alpha, beta) for plan bands; None for
    forms without a Chinchilla form."""

    record: LawRecord
    law: Law
    flops_per_param_token: float
    ensemble: NDArray[np.float64] | None = None
    chinchilla_ensemble: NDArray[np.float64] | None = None
    # The family's metric (Family.metric; fixed at creation, so safe to cache).
    metric: str = ""


class LawCache:
    """Bounded mapping Key -> ResolvedLaw with expiry."""

    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[Key, tuple[float, ResolvedLaw]] = {}
        # Bumped by every invalidation: a load that started before a write must not be cached.
        self._generations: dict[str, int] = {}
        self.hits = 0  # read by the metrics endpoint
        self.misses = 0

    def generation(self, family: str) -> int:
        """Take this before loading from the store; hand it to put()."""
        return self._generations.get(family, 0)

    def get(self, key: Key) -> ResolvedLaw | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() >= entry[0]:
            del self._entries[key]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def put(self, key: Key, value: ResolvedLaw, generation: int) -> None:
        """Cache `value` unless the family was invalidated since `generation` was taken."""
        if self.ttl <= 0 or self.generation(key[0]) != generation:
            return
        if len(self._entries) >= self.max_entries:
            # Oldest first: dicts keep insertion order.
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self._clock() + self.ttl, value)

    def invalidate(self, family: str) -> None:
        self._generations[family] = self.generation(family) + 1
        for key in [k for k in self._entries if k[0] == family]:
            del self._entries[key]


class FreshEntries(Generic[T]):
    """Values cached under LawCache's rules: `ttl` seconds, and stale as soon as their family's
    generation moves (any write to it through this process)."""

    def __init__(self, laws: LawCache, clock: Callable[[], float] = time.monotonic) -> None:
        self._laws = laws
        self._clock = clock
        self._entries: dict[Key, tuple[float, int, T]] = {}

    def get(self, key: Key) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, generation, value = entry
        if self._clock() >= expires or generation != self._laws.generation(key[0]):
            del self._entries[key]
            return None
        return value

    def put(self, key: Key, value: T, generation: int) -> None:
        if self._laws.ttl <= 0 or self._laws.generation(key[0]) != generation:
            return
        if len(self._entries) >= MAX_FRESH_ENTRIES:
            del self._entries[next(iter(self._entries))]  # oldest first
        self._entries[key] = (self._clock() + self._laws.ttl, generation, value)

    async def fetch(self, key: Key, load: Callable[[], T]) -> T:
        """The cached value, else `load()` run in a thread (it reads the store) and cached unless
        the family was written meanwhile."""
        cached = self.get(key)
        if cached is not None:
            return cached
        generation = self._laws.generation(key[0])
        value = await asyncio.to_thread(load)
        self.put(key, value, generation)
        return value
