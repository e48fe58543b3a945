"""The simulation engine: time units, seeded random streams, statistics primitives, the order
of same-time events and the recorder.

Import what you need from its modules (``mktme_des.engine.time``, ``.rng``, ``.stats``, ...):
this package imports nothing itself, so a command that needs only times (``mktme-des list``,
loading a scenario) does not pay for numpy.
"""
