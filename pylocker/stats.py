"""What a serving locker counts: grants, time-outs, expiries, wait and hold times, per name.

Pure bookkeeping, fed by the server core as its table answers. Histograms have fixed
buckets (powers of two from 10 µs), so adding a sample is a few integer operations and
a percentile is read from at most 30 counters. The names followed are bounded
(``MAX_NAMES``): when full, the name followed longest makes room for a new one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, Final

FIRST_BUCKET: Final = 1e-5  # seconds: the upper bound of the first bucket
BUCKETS: Final = 28  # 10 µs ... about 22 minutes, then one overflow bucket
MAX_NAMES: Final = 10_000


_PER_SECOND: Final = 1 / FIRST_BUCKET


def _bucket(seconds: float) -> int:
    """Bucket i holds what is under FIRST_BUCKET * 2**i (an upper bound is what percentiles need)."""
    return min(BUCKETS, int(seconds * _PER_SECOND).bit_length()) if seconds > 0 else 0


class Histogram:
    """Counts of durations in buckets ``FIRST_BUCKET * 2**i``."""

    # Only the buckets and the sum are kept up to date: a grant or a release must cost the
    # serving locker as little as possible; the count is added up when somebody asks.
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (BUCKETS + 1)
        self.total = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, seconds: float) -> None:
        self.counts[_bucket(seconds)] += 1
        self.total += seconds

    def percentile(self, q: float) -> float | None:
        """An upper bound of the ``q`` quantile (0 < q <= 1), None without samples."""
        total = self.count
        if not total:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return math.ldexp(FIRST_BUCKET, index)
        return math.ldexp(FIRST_BUCKET, BUCKETS)

    def summary(self) -> dict[str, Any]:
        """count, sum, p50, p99 (upper bounds) and ``buckets``: the count in each bucket, FIRST_BUCKET * 2**i."""
        return {"count": self.count, "sum": self.total, "p50": self.percentile(0.5), "p99": self.percentile(0.99),
                "buckets": list(self.counts)}


class NameStats:
    __slots__ = ("expiries", "hold", "timeouts", "wait")

    def __init__(self) -> None:
        self.timeouts = 0
        self.expiries = 0
        self.wait = Histogram()
        self.hold = Histogram()

    @property
    def acquires(self) -> int:
        return self.wait.count

    def summary(self) -> dict[str, Any]:
        return {"acquires": self.acquires, "timeouts": self.timeouts, "expiries": self.expiries,
                "wait": self.wait.summary(), "hold": self.hold.summary()}


class ServerStats:
    """Totals and per-name figures since the serving locker started."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.timeouts = 0
        self.expiries = 0
        self.publications = 0  # items published through this serving locker
        self.names: dict[str, NameStats] = {}
        self.owners: dict[Hashable, NameStats] = {}  # a connected owner's figures (forgotten with it)
        self.wait = Histogram()
        self.hold = Histogram()

    @property
    def grants(self) -> int:
        return self.wait.count

    @property
    def releases(self) -> int:
        return self.hold.count

    def _of(self, name: str) -> NameStats:
        stats = self.names.get(name)
        if stats is None:
            if len(self.names) >= MAX_NAMES:  # bounded: the name followed longest makes room
                del self.names[next(iter(self.names))]
            stats = self.names[name] = NameStats()
        return stats

    def granted(self, names: tuple[str, ...], waited: float) -> int:
        """Count a grant (its wait, in total and per name); returns the wait's bucket."""
        # On every grant: the histograms' add, inlined (the bucket is the same for each name).
        index = 0 if waited <= 0.0 else min(BUCKETS, int(waited * _PER_SECOND).bit_length())
        histogram = self.wait
        histogram.counts[index] += 1
        histogram.total += waited
        names_stats = self.names
        for name in names:
            histogram = (names_stats.get(name) or self._of(name)).wait
            histogram.counts[index] += 1
            histogram.total += waited
        return index

    def owner(self, owner: Hashable) -> NameStats:
        """``owner``'s figures, kept until ``forget``: acquires, time-outs, expiries, wait and hold times."""
        stats = self.owners.get(owner)
        if stats is None:
            stats = self.owners[owner] = NameStats()
        return stats

    def forget(self, owner: Hashable) -> None:
        self.owners.pop(owner, None)

    def timed_out(self, names: tuple[str, ...]) -> None:
        self.timeouts += 1
        for name in names:
            self._of(name).timeouts += 1

    def released(self, names: tuple[str, ...], held: float) -> int:
        """Count a release (how long it was held, in total and per name); returns that time's bucket."""
        index = 0 if held <= 0.0 else min(BUCKETS, int(held * _PER_SECOND).bit_length())
        histogram = self.hold
        histogram.counts[index] += 1
        histogram.total += held
        names_stats = self.names
        for name in names:
            histogram = (names_stats.get(name) or self._of(name)).hold
            histogram.counts[index] += 1
            histogram.total += held
        return index

    def expired(self, names: tuple[str, ...]) -> None:
        self.expiries += 1
        for name in names:
            self._of(name).expiries += 1

    def summary(self, now: float, busiest: int = 20) -> dict[str, Any]:
        """Totals, and the ``busiest`` names by acquires."""
        top = sorted(self.names.items(), key=lambda item: item[1].acquires, reverse=True)[:busiest]
        return {"uptime": now - self.started_at, "grants": self.grants, "timeouts": self.timeouts,
                "expiries": self.expiries, "releases": self.releases, "publications": self.publications,
                "wait": self.wait.summary(), "hold": self.hold.summary(),
                "names": {name: stats.summary() for name, stats in top}}
