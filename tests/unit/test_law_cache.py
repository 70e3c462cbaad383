"""The per-process law cache: expiry, eviction on writes, bounded size."""

from __future__ import annotations

import asyncio

from planner.laws import ChinchillaLaw
from server.law_cache import FreshEntries, LawCache, ResolvedLaw
from server.store.records import LawRecord

LAW = ChinchillaLaw(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36)


def resolved(family: str, version: int) -> ResolvedLaw:
    record = LawRecord(family, "chinchilla", version, LAW.to_mapping(), "published", "", "", 0.0)
    return ResolvedLaw(record, LAW, 6.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache = LawCache(ttl=2.0, clock=clock)
    cache.put(("f", "", 0), resolved("f", 1), 0)
    clock.now += 1.9
    hit = cache.get(("f", "", 0))
    assert hit is not None and hit.record.version == 1
    clock.now += 0.2
    assert cache.get(("f", "", 0)) is None


def test_invalidate_drops_only_that_family() -> None:
    cache = LawCache(ttl=60.0)
    cache.put(("f", "", 0), resolved("f", 1), 0)
    cache.put(("f", "chinchilla", 1), resolved("f", 1), 0)
    cache.put(("g", "", 0), resolved("g", 1), 0)
    cache.invalidate("f")
    assert cache.get(("f", "", 0)) is None and cache.get(("f", "chinchilla", 1)) is None
    assert cache.get(("g", "", 0)) is not None


def test_size_is_bounded_and_zero_ttl_disables() -> None:
    cache = LawCache(ttl=60.0, max_entries=3)
    for index in range(5):
        cache.put((f"f{index}", "", 0), resolved(f"f{index}", 1), 0)
    assert [cache.get((f"f{i}", "", 0)) is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    off = LawCache(ttl=0.0)
    off.put(("f", "", 0), resolved("f", 1), 0)
    assert off.get(("f", "", 0)) is None


def test_a_load_that_raced_a_write_is_not_cached() -> None:
    """A query loads v1, a write invalidates meanwhile: the stale v1 must not be stored."""
    cache = LawCache(ttl=60.0)
    generation = cache.generation("f")  # the query misses and starts loading
    cache.invalidate("f")  # a PutLaw commits v2 and evicts
    cache.put(("f", "", 0), resolved("f", 1), generation)  # the stale load finishes
    assert cache.get(("f", "", 0)) is None
    cache.put(("f", "", 0), resolved("f", 2), cache.generation("f"))
    hit = cache.get(("f", "", 0))
    assert hit is not None and hit.record.version == 2


def test_fresh_entries_fetch_loads_once_and_follow_the_law_cache_rules() -> None:
    """FreshEntries (curve, task and Step Laws): loaded once while fresh; gone after the TTL or
    a write to the family; a load that raced a write is not kept."""
    now = [0.0]
    laws = LawCache(ttl=5.0, clock=lambda: now[0])
    entries: FreshEntries[str] = FreshEntries(laws, clock=lambda: now[0])
    loads: list[str] = []

    def load() -> str:
        loads.append("x")
        return f"value {len(loads)}"

    key = ("fam", "multi_power", 0)
    fetch = lambda: asyncio.run(entries.fetch(key, load))  # noqa: E731
    assert fetch() == "value 1" and fetch() == "value 1" and len(loads) == 1
    now[0] = 5.0  # the TTL has passed
    assert fetch() == "value 2"
    laws.invalidate("fam")  # a write to the family
    assert fetch() == "value 3" and fetch() == "value 3"

    def racing_load() -> str:
        laws.invalidate("fam")  # written while this load read the store
        return "stale"

    other = ("fam", "lr_annealing", 0)
    assert asyncio.run(entries.fetch(other, racing_load)) == "stale"
    assert entries.get(other) is None
