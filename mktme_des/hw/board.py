"""The scenario board: what actors share besides memory."""

from __future__ import annotations

import simpy

from mktme_des.hw.address import LINE_MASK


class Board:
    """What scenario actors share besides memory: happens-before flags (an op's label, raised
    when it completes) and bytes captured by label."""

    def __init__(self, env) -> None:
        self.env = env
        self.flags: dict[str, simpy.Event] = {}
        self.done_at: dict[str, int] = {}  # label -> when its op completed
        self.captures: dict[str, bytes] = {}
        self.pages: dict[str, int] = {}  # page name -> the physical frame a process op named
        self.boot_tweak = lambda: 0  # set by the platform: the tweak in force

    def flag(self, label: str) -> simpy.Event:
        """The event of the op labelled ``label`` completing: an actor waits on it to run
        after that op (a scenario's ``after``), whatever the timing."""
        ev = self.flags.get(label)
        if ev is None:
            ev = self.flags[label] = self.env.event()
        return ev

    def raise_flag(self, label: str, t: int) -> None:
        """The op labelled ``label`` completed at ``t`` (the actor's local time)."""
        ev = self.flag(label)
        self.done_at[label] = max(t, self.env.now)
        if t > self.env.now:
            ev2 = self.env.timeout(t - self.env.now)
            ev2.callbacks.append(lambda _e: ev.succeed())
        else:
            ev.succeed()

    def wait(self, arg: str | tuple[str, int]) -> simpy.Event:
        """What an AWAIT op waits for: ``label`` (the op labelled so has completed), or
        ``(label, delay)``: ``delay`` ticks after that op completed (a scenario's relative
        ``at = "LABEL+5ns"``). A delay already over when the op completes costs nothing more."""
        if isinstance(arg, str):
            return self.flag(arg)
        label, delay = arg
        ev = self.flag(label)
        if not delay:
            return ev
        env = self.env
        out = env.event()

        def due(_event=None) -> None:
            t = self.done_at[label] + delay
            if t > env.now:
                env.timeout(t - env.now).callbacks.append(lambda _e: out.succeed())
            else:
                out.succeed()

        if ev.callbacks is None:  # completed already
            due()
        else:
            ev.callbacks.append(due)
        return out

    def captured(self, arg: tuple, pa: int) -> bytes:
        """The bytes a WRITE_CAPTURE op stores: a capture, or its XTS preimage under a key."""
        from mktme_des.crypto import line_tweak, xts_decrypt

        label, key = arg
        if label not in self.captures:
            raise ValueError(f"nothing was captured as {label!r} before it was used")
        data = self.captures[label]
        if key is not None:
            data = xts_decrypt(key, line_tweak(pa & LINE_MASK, self.boot_tweak()), data)
        return data
