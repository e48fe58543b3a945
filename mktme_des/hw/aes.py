"""The AES-XTS engine of a memory controller, as a timing model.

The engine sits on the data path between the controller and the DRAM bus. A read pays
``latency`` after its data returns (the tweak, which depends only on the address, is computed
during the DRAM access); a write pays it before the data goes to DRAM. A pipelined engine
accepts a new line every ``1 / lines_per_ns``; an unpipelined one holds each line for the whole
latency. Lines that bypass encryption (TME bypass, NO_ENCRYPT) skip the engine.

The bytes themselves are computed by :mod:`mktme_des.crypto` when DRAM is read or written; this
class only says *when*.
"""

from __future__ import annotations

from mktme_des.engine.server import Stage
from mktme_des.engine.stats import ServerStat
from mktme_des.engine.time import ns


class AesEngine:
    """Fixed latency, and one line accepted per issue interval (the whole latency when the
    engine is not pipelined). Busy time counts the issue interval a line occupies."""

    def __init__(self, latency_ns: float, pipelined: bool, lines_per_ns: float) -> None:
        self.latency = ns(latency_ns)
        self.interval = max(1, ns(1.0 / lines_per_ns)) if pipelined else max(1, self.latency)
        self.stage = Stage(self.interval)
        self.stat = ServerStat()

    def process(self, t: int, floor: int = -1) -> int:
        """A line reaches the engine at ``t``; returns when it leaves it. ``floor``: the
        request's arrival at the controller (see :meth:`Stage.reserve`; negative: ``t``)."""
        start = self.stage.reserve(t, -1, floor)
        self.stat.record(start - t, self.interval)
        return start + self.latency
