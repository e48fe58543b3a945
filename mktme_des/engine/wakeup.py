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

Parked streams
--------------
With several cores, nearly every cache hit of a core comes after another core's pending
wake-up, so each would cost a push and a pop on SimPy's queue and a resumption of the core's
generator. While :func:`run` drives the environment, a core waits instead by *parking* its op
stream (:class:`Parked`) with the environment's :class:`Parking`: the key it would have pushed,
``(time, NORMAL, next id of the environment's own counter)``, is taken exactly as
:meth:`Wakeup.at` takes it, but kept beside SimPy's queue, and :func:`run` merges the two by key.
When a parked stream's key comes first, the loop makes the step the core's generator would
have made at that wake-up, without resuming it: :meth:`Parked.advance` executes the ops the
core would execute inline (cache hits, COMPUTE) at the same local times, up to its next wait,
for which it takes the next id, as :meth:`Wakeup.at` would; the first op it cannot execute
this way (a miss, a flush, the end of the stream...) is handed back, by the wake-up's
callbacks, to the generator, which goes on with it exactly where it would have been.

This is not a change of order but of mechanism. The rule that makes it exact:

* every key a parked stream takes is the one the generator would have pushed, taken at the
  same point of the id sequence (no other event is scheduled between the two), so the merged
  order of the queue and the parked streams is SimPy's order, and every event id of the run
  is the one it would have been;
* a step executes, in that order, the very code the generator runs for those ops, with the
  same horizon (:meth:`Parking.horizon`: the earliest of SimPy's queue and the parked keys,
  which is what the queue holds when every stream's wake-up is on it), so it has the same
  effects (cache contents and replacement order, line bytes, oracle calls and violations,
  logs, statistics), in the same order;
* nothing else runs during a step, as nothing else runs while a generator runs; ``env.now``
  is the wake-up's time, as when the generator runs.

A core's other waits on the way, for a request to reach memory and for its data to come back,
need no step: the generator goes on after them. They are *held* in the same heap
(:meth:`Parking.hold`), with the same key, and when the key comes the generator is resumed
as its wake-up would resume it. What that saves is the tuple pushed on SimPy's queue and the
comparisons of tuples that order it.

Everything that reads the time of the next event reads :func:`horizon` (a core's lookahead,
the memory system's inline writebacks), so parked keys count as queued ones.

The order is kept on purpose. Running a core's private hits *past* other cores' wake-ups would
save the switching between cores too, but is not exact in general: the id a wake-up takes
decides same-time ties, so a core that skipped its waits would take its next id early and pass
same-time events it follows in SimPy's order (cores in lockstep tie at nearly every time), and
what another core does after its pending wake-up is not known before its stream is read.

So results are byte-identical with and without parking (``MKTME_DES_PARKING=0`` turns it off,
for tests); a stream parks only while :func:`run` drives the loop (``env.run(until=...)``
sees only SimPy's queue).
"""

from __future__ import annotations

import os
from heapq import heappop, heappush

import cython
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


NO_EVENT = 1 << 62  # the horizon when nothing is scheduled (later than any simulated time)
PARK, RESUME = 0, 1  # what a parked stream's step ends with (Parked.advance)


class Parked:
    """An op stream that can wait parked (see "Parked streams" above; C fields in
    ``wakeup.pxd``). ``t`` and ``eid`` are its key while parked, ``wake`` the wake-up its
    generator waits on."""

    def __init__(self, wake: Wakeup) -> None:
        self.t = 0
        self.eid = 0
        self.wake = wake
        self.held = False  # waiting in the heap for a plain wake-up (Parking.hold), no step

    def advance(self, horizon: int) -> int:
        """Make the step the generator would make when woken at ``self.t``: execute what it
        would execute inline (the first op whatever the horizon, later ones while their time
        is before ``horizon``); return :data:`PARK` with ``t`` set to the time of the next
        wait, or :data:`RESUME` when the generator must go on."""
        raise NotImplementedError


class Parking:
    """The parked streams of one environment, a heap by key ``(t, eid)`` beside SimPy's queue
    (their priority is always ``NORMAL``). ``active`` while :func:`run` drives the loop."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.queue = env._queue
        self._eid = env._eid
        self.heap: list = []
        self.n = 0
        self.now = -1  # the time last given to env._now by run() or a step
        self.steps = 0  # steps made for parked streams (what tests check was exercised)
        self.holds = 0  # plain waits held in the heap (Parking.hold), likewise
        self.active = False
        self.enabled = os.environ.get("MKTME_DES_PARKING", "1") != "0"

    def usable(self) -> bool:
        """Whether a stream may park now."""
        return self.active

    def horizon(self) -> int:
        """The time of the next event, parked streams included (``env.peek()`` as it would be
        with every parked stream's wake-up on SimPy's queue)."""
        queue = self.queue
        h = queue[0][0] if queue else NO_EVENT
        if self.n:
            p = self.heap[0]
            if p.t < h:
                return p.t
        return h

    def park(self, p: Parked, t: int) -> Wakeup:
        """Park ``p`` until ``t``, taking the key :meth:`Wakeup.at` would take; returns the
        wake-up for the generator to yield (its waiter is resumed when the stream is handed
        back)."""
        p.t = t
        p.eid = next(self._eid)
        p.wake.callbacks = []
        self._push(p)
        return p.wake

    def hold(self, p: Parked, t: int) -> Wakeup:
        """:meth:`Wakeup.at` for ``p``'s generator, kept in the heap (a key compared in
        machine integers, no tuple on SimPy's queue): when its key comes, the generator is
        resumed as it would be by its wake-up, with no step made for it."""
        p.held = True
        self.holds += 1
        return self.park(p, t)

    def _push(self, p: Parked) -> int:
        heap = self.heap
        i = self.n
        if i == len(heap):
            heap.append(p)
        else:
            heap[i] = p
        self.n = i + 1
        while i:
            j = (i - 1) >> 1
            q = heap[j]
            if q.t < p.t or (q.t == p.t and q.eid < p.eid):
                break
            heap[i] = q
            i = j
        heap[i] = p
        return 0

    def _pop(self) -> Parked:
        heap = self.heap
        top = heap[0]
        n = self.n - 1
        self.n = n
        if n:
            heap[0] = heap[n]
            self._sift_top()
        heap[n] = None
        return top

    def _sift_top(self) -> int:
        """Restore the heap order after the first stream's key grew (or it was replaced)."""
        heap = self.heap
        n = self.n
        p = heap[0]
        i = 0
        while True:
            c = 2 * i + 1
            if c >= n:
                break
            q = heap[c]
            if c + 1 < n:
                r = heap[c + 1]
                if r.t < q.t or (r.t == q.t and r.eid < q.eid):
                    c += 1
                    q = r
            if p.t < q.t or (p.t == q.t and p.eid < q.eid):
                break
            heap[i] = q
            i = c
        heap[i] = p
        return 0

    def first(self) -> bool:
        """Whether the first parked stream comes before the head of SimPy's queue."""
        if not self.n:
            return False
        queue = self.queue
        if not queue:
            return True
        p = self.heap[0]
        head = queue[0]
        t = head[0]
        if p.t != t:
            return p.t < t
        if head[1] != NORMAL:
            return head[1] > NORMAL
        return p.eid < head[2]

    def step(self) -> int:
        """The first parked stream's wake-up is due: make its step (:meth:`Parked.advance`),
        then park it again or hand it back to its generator."""
        p = self.heap[0]
        now = p.t
        wake = p.wake
        if now != self.now:
            self.env._now = self.now = now
        if not wake.callbacks:
            self._pop()
            return 0  # nobody waits on it any more: a popped wake-up without callbacks
        if p.held:
            p.held = False
            self._pop()
            self._wake(wake)
            return 0
        # The horizon without p: the earliest of SimPy's queue and the other parked keys.
        queue = self.queue
        h = queue[0][0] if queue else NO_EVENT
        if self.n > 1:
            q = self.heap[1]
            if self.n > 2:
                r = self.heap[2]
                if r.t < q.t:
                    q = r
            if q.t < h:
                h = q.t
        self.steps += 1
        if p.advance(h) == PARK:
            p.eid = next(self._eid)
            self._sift_top()
            return 0
        self._pop()
        self._wake(wake)
        return 0

    def _wake(self, wake: Wakeup) -> int:
        """Call the callbacks of ``wake`` (its generator's resumption), as Environment.step
        would."""
        callbacks, wake.callbacks = wake.callbacks, None
        for callback in callbacks:
            callback(wake)
        return 0


def parking_for(env) -> Parking | None:
    """``env``'s :class:`Parking` (made on first use), or None where streams never park (an
    environment that orders ties its own way, or parking turned off)."""
    if type(env) is not simpy.Environment:
        return None
    parking = env.__dict__.get("_parking")
    if parking is None:
        parking = env._parking = Parking(env)
    return parking if parking.enabled else None


def horizon(env) -> int:
    """The time of the next event of ``env``, parked streams included."""
    parking = env.__dict__.get("_parking")
    if parking is not None:
        return parking.horizon()
    queue = env._queue
    return queue[0][0] if queue else NO_EVENT


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
        self._send = generator.send
        start = Wakeup(env)
        start.callbacks = [self._resume]
        heappush(env._queue, (env._now, URGENT, next(env._eid), start))

    def resume(self, event) -> None:
        """The event the generator waited on happened: run it to its next wait."""
        gen = self.gen
        while True:
            try:
                if type(event) is Wakeup:
                    # The commonest event, read through its C fields; a wake-up is never
                    # failed.
                    w = cython.cast(Wakeup, event)
                    event = self._send(w._value)
                elif event._ok:
                    event = self._send(event._value)
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
            if type(event) is Wakeup:
                w = cython.cast(Wakeup, event)
                if w.callbacks is not None:
                    w.callbacks.append(self._resume)
                    return
            elif event.callbacks is not None:
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
    cython.declare(parking=Parking, queue=list, state=dict, p=Parked)
    queue = env._queue
    # env._now set in the instance's dict, as the attribute assignment would, without the
    # look through the class hierarchy for a descriptor first (SimPy defines none for it).
    state = env.__dict__
    parking = parking_for(env)
    if parking is None:
        parking = Parking(env)  # never used: nothing parks on a disabled one
    parking.active = True
    parking.now = -1  # env._now may have moved outside this loop (env.run(until=...))
    try:
        while True:
            if parking.n and parking.first():
                parking.step()
                continue
            if not queue:
                break
            now, _prio, _eid, event = heappop(queue)
            state["_now"] = parking.now = now
            if type(event) is Wakeup:  # read through its C fields; never failed
                parking._wake(cython.cast(Wakeup, event))
                continue
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc
    finally:
        parking.active = False
        # Streams still parked or held when the loop is left (an exception escaped it) go
        # back on SimPy's queue under their own keys: whatever drives the environment next,
        # env.run(until=...) included, resumes their generators in SimPy's order, each at the
        # op it stopped at.
        while parking.n:
            p = parking._pop()
            p.held = False
            if p.wake.callbacks:
                heappush(queue, (p.t, NORMAL, p.eid, p.wake))
