"""Statistics primitives in the style of SST: counters and histograms, not raw samples.

Everything here serialises to plain JSON-ready dicts with :meth:`to_dict`.
"""

from __future__ import annotations

import math

from mktme_des.engine.time import to_ns

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Counter(dict):
    """Named event counts: ``c.add("hits")``. A dict, so it serialises as one."""

    def add(self, name: str, n: int = 1) -> None:
        self[name] = self.get(name, 0) + n

    def to_dict(self) -> dict[str, int]:
        return dict(sorted(self.items()))


class LatencyStat:
    """Count, sum, sum of squares, min, max and an exact histogram of latencies.

    Latencies are recorded in clock ticks (picoseconds). A simulated machine produces few
    distinct latencies (one per hit level, plus the queueing spread of misses), so an exact
    ``value -> count`` map is both small and exact for percentiles.
    """

    def __init__(self) -> None:
        self.hist: dict[int, int] = {}

    def record(self, ticks: int) -> None:
        h = self.hist
        h[ticks] = h.get(ticks, 0) + 1

    def merge(self, other: LatencyStat) -> None:
        for k, v in other.hist.items():
            self.hist[k] = self.hist.get(k, 0) + v

    @property
    def count(self) -> int:
        return sum(self.hist.values())

    def mean_ns(self) -> float:
        n = self.count
        return to_ns(sum(k * v for k, v in self.hist.items()) / n) if n else math.nan

    def percentile_ns(self, p: float) -> float:
        """The smallest recorded latency with at least ``p`` percent of samples at or below."""
        n = self.count
        if not n:
            return math.nan
        rank = max(1, math.ceil(p / 100.0 * n))
        seen = 0
        for k in sorted(self.hist):
            seen += self.hist[k]
            if seen >= rank:
                return to_ns(k)
        return to_ns(max(self.hist))  # pragma: no cover - unreachable

    def samples_ns(self) -> tuple[list[float], list[int]]:
        """Sorted distinct latencies (ns) and their counts, e.g. for a CDF plot."""
        keys = sorted(self.hist)
        return [to_ns(k) for k in keys], [self.hist[k] for k in keys]

    def to_dict(self) -> dict:
        n = self.count
        if not n:
            return {"count": 0}
        total = sum(k * v for k, v in self.hist.items())
        sq = sum(k * k * v for k, v in self.hist.items())
        mean = total / n
        var = max(sq / n - mean * mean, 0.0)
        out = {
            "count": n,
            "mean_ns": to_ns(mean),
            "std_ns": to_ns(math.sqrt(var)),
            "min_ns": to_ns(min(self.hist)),
            "max_ns": to_ns(max(self.hist)),
        }
        for p in PERCENTILES:
            out[f"p{p:g}_ns"] = self.percentile_ns(p)
        return out


class ServerStat:
    """A FIFO server's occupancy: jobs, busy time, and queueing delay apart from service."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.jobs = 0
        self.busy = 0
        self.queue = 0
        self.queue_max = 0

    def record(self, wait: int, service: int) -> None:
        self.jobs += 1
        self.busy += service
        self.queue += wait
        if wait > self.queue_max:
            self.queue_max = wait

    def to_dict(self, elapsed: int) -> dict:
        return {
            "jobs": self.jobs,
            "busy_ns": to_ns(self.busy),
            "utilisation": (self.busy / elapsed) if elapsed else 0.0,
            "queue_delay_total_ns": to_ns(self.queue),
            "queue_delay_mean_ns": to_ns(self.queue / self.jobs) if self.jobs else 0.0,
            "queue_delay_max_ns": to_ns(self.queue_max),
        }
