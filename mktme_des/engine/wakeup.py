"""Cores on SimPy's own queue, without SimPy's per-wait objects.

A core waits thousands of times per simulated microsecond; this module makes each wait cheap
while keeping SimPy's queue, its ordering keys and so every result as they were:
:class:`Wakeup` replaces ``env.timeout``, :class:`Driver` replaces ``env.process`` for a core's
op stream, and :func:`run` replaces ``env.run()``.

``Environment.step`` pops ``(time, priority, id, event)`` from the environment's queue and calls
the event's callbacks; any object with ``callbacks``, ``_ok`` and ``_value`` serves as the event,
and a process waiting on it is resumed as by a timeout. A :class:`Wakeup` is pushed with the
very key ``env.timeout`` would give it, ``(time, NORMAL, next id of the environment's own
counter)``, so the order of everything, and so every result, is what it would be with a
timeout; what it saves is building and scheduling an event object for every wait of every core.

It is reused: a core waits on one wake-up at a time. Only environments that order same-time
events as SimPy does take it (:func:`wakeup_for`); those that shuffle or choose tie orders
(:mod:`mktme_des.engine.ties`) key their events their own way, and keep ``env.timeout``.
"""

from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.events import NORMAL, URGENT


class Wakeup:
    """A reusable stand-in for ``env.timeout(t - env.now)``: ``yield wakeup.at(t)`` (its C
    fields are declared in ``wakeup.pxd``)."""

    def __init__(self, env: simpy.Environment) -> None:
        self.callbacks: list | None = None
        self._ok = True
        self._value = None
        self._queue = env._queue
        self._eid = env._eid

    def at(self, t: int) -> Wakeup:
        """Schedule this wake-up at absolute time ``t`` (not before now); returns it, to be
        yielded by the process that waits."""
        self.callbacks = []
        heappush(self._queue, (t, NORMAL, next(self._eid), self))
        return self


def wakeup_for(env) -> Wakeup | None:
    """A wake-up for ``env``, or None when ``env`` orders ties its own way."""
    return Wakeup(env) if type(env) is simpy.Environment else None


class Driver:
    """Runs a core's op stream as ``env.process(generator)`` would, without SimPy's
    ``Process``: started by an urgent wake-up at the current time (as ``Initialize`` is),
    resumed by the events it yields, and ending in ``done``, an event triggered with the
    generator's return value (or its exception), scheduled as a finished ``Process`` is.
    Every key pushed on the queue is the one SimPy would push, in the same order."""

    def __init__(self, env: simpy.Environment, generator) -> None:
        self.env = env
        self.gen = generator
        self.done = env.event()
        self._resume = self.resume
        start = Wakeup(env)
        start.callbacks = [self._resume]
        heappush(env._queue, (env._now, URGENT, next(env._eid), start))

    def resume(self, event) -> None:
        """The event the generator waited on happened: run it to its next wait."""
        gen = self.gen
        while True:
            try:
                if event._ok:
                    event = gen.send(event._value)
                else:
                    event._defused = True
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    event = gen.throw(exc)
            except StopIteration as e:
                self._finish(True, e.args[0] if e.args else None)
                return
            except BaseException as e:  # noqa: BLE001 - handed on, as a failed Process does
                self._finish(False, e)
                return
            if event.callbacks is not None:
                event.callbacks.append(self._resume)
                return

    def _finish(self, ok: bool, value) -> None:
        done = self.done
        done._ok = ok
        done._value = value
        self.env.schedule(done)


def start(env, generator):
    """Run ``generator`` as a process; the event of its end (a ``Process`` where ``env``
    orders ties its own way, else a :class:`Driver`'s ``done``)."""
    if type(env) is not simpy.Environment:
        return env.process(generator)
    return Driver(env, generator).done


def run(env) -> None:
    """``env.run()`` until no event is left, with ``Environment.step``'s semantics (callbacks
    in order, a failed event not defused crashes the run) in one loop."""
    if type(env) is not simpy.Environment:
        env.run()
        return
    queue = env._queue
    while queue:
        now, _prio, _eid, event = heappop(queue)
        env._now = now
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc
