"""Kernel locks on the SimPy clock: a sleeping mutex and the CPU-hotplug reader/writer lock."""

from __future__ import annotations

from collections import deque


class Mutex:
    """A FIFO sleeping lock (``mktme_map_lock`` in RFC v2). ``yield m.acquire()``."""

    def __init__(self, env) -> None:
        self.env = env
        self.held = False
        self.waiters: deque = deque()

    def acquire(self):
        ev = self.env.event()
        if not self.held:
            self.held = True
            ev.succeed()
        else:
            self.waiters.append(ev)
        return ev

    def release(self) -> None:
        if self.waiters:
            self.waiters.popleft().succeed()
        else:
            self.held = False


class HotplugLock:
    """``get_online_cpus()`` (readers: key broadcasts) vs CPU online/offline (the writer).

    Readers share the lock; a writer waits for every reader to leave and keeps new readers out
    while it waits and while it holds the lock, like the kernel's percpu rwsem.
    """

    def __init__(self, env) -> None:
        self.env = env
        self.readers = 0
        self.writer = False
        self.waiting_writers: deque = deque()
        self.waiting_readers: deque = deque()

    def read_acquire(self):
        ev = self.env.event()
        if not self.writer and not self.waiting_writers:
            self.readers += 1
            ev.succeed()
        else:
            self.waiting_readers.append(ev)
        return ev

    def read_release(self) -> None:
        self.readers -= 1
        if self.readers == 0 and self.waiting_writers:
            self.writer = True
            self.waiting_writers.popleft().succeed()

    def write_acquire(self):
        ev = self.env.event()
        if not self.writer and self.readers == 0:
            self.writer = True
            ev.succeed()
        else:
            self.waiting_writers.append(ev)
        return ev

    def write_release(self) -> None:
        self.writer = False
        if self.waiting_writers:
            self.writer = True
            self.waiting_writers.popleft().succeed()
            return
        while self.waiting_readers:
            self.readers += 1
            self.waiting_readers.popleft().succeed()
