"""The recorder: what components tell the world, on named channels.

Components never format or keep logs of their own. They emit to the platform's recorder, and
whoever reads a run (the scenario trace, the Chrome trace, the timeline picture, the oracle's
causes, the kernel's broadcast measurements, tests) reads the channels it needs:

``events``
    :class:`Event` records a person reads in a trace: writebacks arriving, superseded or lost,
    keys programmed, PCONFIGs applied, reboots. Kept only when asked (:meth:`Recorder.keep`).
``writebacks``
    Every :class:`~mktme_des.hw.memsys.Writeback` once its fate is known (applied,
    superseded or lost), for the memory system's rule tests. Kept only when asked.
``pconfig``
    Every PCONFIG issued, applied or cut by a reset: ``(time, cpu, package, keyid, command,
    what)``. Always kept (the kernel measures its broadcasts from it; it is short).

and :attr:`Recorder.counts`, named counters (``pconfig_busy``: DEVICE_BUSY returns).

A channel not kept is ``None`` in :attr:`Recorder.channels` and emitting to it costs one
dictionary look-up: the hot path checks before building a record.
"""

from __future__ import annotations

from typing import NamedTuple

ALWAYS = ("pconfig",)
CHANNELS = ("events", "writebacks", "pconfig")


class Event(NamedTuple):
    """One thing a person reads in a trace. ``origin``: ``(actor, time)`` of what caused it
    (for a writeback, the flush or eviction that sent it), or None."""

    time: int
    actor: str
    what: str
    tag: int | None
    detail: str
    origin: tuple[str, int] | None = None


class Recorder:
    """Named channels of records (see the module docstring)."""

    def __init__(self) -> None:
        self.channels: dict[str, list | None] = {
            name: [] if name in ALWAYS else None for name in CHANNELS}
        self.counts: dict[str, int] = {}

    def keep(self, *names: str) -> Recorder:
        """Start keeping the channels ``names`` (from now on); returns the recorder."""
        for name in names:
            if name not in self.channels:
                raise ValueError(f"no channel {name!r}; channels: {', '.join(CHANNELS)}")
            if self.channels[name] is None:
                self.channels[name] = []
        return self

    def kept(self, name: str) -> list | None:
        """The records of channel ``name`` so far, or None when it is not kept."""
        return self.channels[name]

    def __getitem__(self, name: str) -> list:
        records = self.channels[name]
        if records is None:
            raise KeyError(f"channel {name!r} is not kept (Recorder.keep)")
        return records

    def emit(self, name: str, record) -> None:
        """Add ``record`` to channel ``name`` if it is kept."""
        records = self.channels[name]
        if records is not None:
            records.append(record)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n
