"""The simulation engine: time units, seeded random streams and statistics primitives."""

from mktme_des.engine.rng import Streams
from mktme_des.engine.stats import Counter, LatencyStat, ServerStat
from mktme_des.engine.time import PS_PER_NS, ns, to_ns

__all__ = ["Streams", "Counter", "LatencyStat", "ServerStat", "PS_PER_NS", "ns", "to_ns"]
