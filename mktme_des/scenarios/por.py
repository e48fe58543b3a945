"""Partial-order reduction of ``scenario explore --exhaustive``.

Exhaustive exploration decides every tie of same-time events (:mod:`mktme_des.engine.ties`).
Two tied events whose steps touch disjoint state lead to the same state in either order, so
running both orders explores one schedule twice. This module says which events are
*independent* and explores each class of equivalent schedules once, with sleep sets
(Godefroid 1996) over the tree of tie choices.

**Steps and footprints.** Processing an event is one *step*: SimPy calls the event's
callbacks, and a process resumed by one runs until it yields again. The *footprint* of a
pending event is a set of tokens naming the state its step may read or write, computed from
the event's callbacks and, for a resumed process, from what the process does next. The
tokens are:

* ``hw``: the memory hierarchy as a whole: every cache, the coherence directory, the
  writebacks and fills in flight, every memory controller (its queues, the key table it
  consults when a line arrives), DRAM, the oracle and the platform's reset count;
* ``pkg:P``: package ``P``'s key table and its PCONFIG lock, and the entropy stream of that
  package (what one PCONFIG touches);
* ``rng``: the platform's count of hardware random keys drawn (``SET_KEY_RANDOM``);
* ``kernel``: every kernel structure shared by actors: the key service (KeyIDs, refcounts,
  broadcasts, the serials of the scenario's keys), the page allocator and direct map,
  hotplug state and locks, swap;
* ``mm:NAME``: the address space of the scenario process ``NAME`` (its VMAs, its page
  table), which only its own ops and hotplug (``*``) touch;
* ``flag:L``: the happens-before flag ``L`` (an op's ``label``) on the board; ``board``:
  every flag;
* ``actor:NAME``: the actor's own program position (never shared);
* ``*``: anything: the step is not classified.

**Dependence.** Two events are *dependent* when both footprints are non-empty and one holds
``*``, or they share a token, or one holds ``hw`` and the other a ``pkg:P`` or ``rng``, or one
holds ``board`` and the other a ``flag:L``. Otherwise they are independent: neither step
reads what the other writes, so both orders reach the same state and neither disables the
other (every scheduled event runs). An event's footprint is:

* no callbacks: empty (processing it only marks it processed; a process that waits on it
  later continues at the same instant either way);
* a flag event: ``flag:L`` and its waiters' footprints; the timeout that raises a flag later:
  ``flag:L``; the memory system's own callbacks (a writeback or fill arriving): ``hw``;
* a process resumed, by what it is:

  - a core running its ops (``[[cpu]]``), or an agent: its op stream (:class:`Stream`)
    says how many ops it took. Before it starts: only ``flag:L`` when its first op waits
    for a flag ``L`` not yet raised, nothing when its first op waits for a later ``at`` (the
    step only schedules that wait); else, and once started, ``hw`` and the flags its ops
    wait for or raise from the op it is at on (its frames may be compiled, so where in the
    op it is is not looked at);
  - a scenario's kernel actor (``[[process]]``, ``[[system]]``): what its step can reach
    from where it waits. Waiting before op ``j`` (for its flags or its ``at``, or not
    started): for each op from ``j`` on, the flags its ``after`` names, then, unless its
    ``at`` is later than now (the step ends at that wait), what the op's start touches
    (``START``): ``compute``, ``mmap``, ``add_key`` and ``pconfig`` touch nothing before their
    first wait and end the step there, ``wbinvd`` touches ``hw`` and ends it; the others check
    their arguments first (``munmap`` its own VMA names, ``encrypt_mprotect``,
    ``update_key``, ``revoke`` and ``invalidate`` the key serials ``serials``, ``read``,
    ``write`` and ``clflush`` its ``mm:NAME``, ``keytable`` ``pkg:P``, ``swap_read``
    ``kernel``, any other op all of its tokens below), and a failed check goes on to the next
    op, raising the op's ``label``. Inside op ``i``: the op's tokens (``compute`` none,
    ``mmap`` ``mm:NAME``, hotplug ops ``*``, every other op ``{kernel, hw, serials,
    mm:NAME}``; a ``read``, ``write`` or ``clflush`` whose core op is logged only
    ``mm:NAME``, and before that ``{hw, mm:NAME}``), its ``label``, then as waiting before
    op ``i + 1``.

    A memory access reached in a step never runs in it while another event is due at the
    same instant: the core's lookahead waits (a zero wait) whenever the next event is not
    later than the op, and footprints are only asked of events due now with another event
    due now too (a tie, or a step while sleeping events wait). When nothing else is due the
    core runs the op inline, which is the same as that zero wait followed by one more step;
  - the kernel's per-package part of a key broadcast (``_on_lead``): before it starts,
    nothing beyond itself (it waits for its IPI or starts PCONFIG); after, ``kernel``;
  - PCONFIG: ``pkg:P`` of the executing core's package, and ``rng`` for ``SET_KEY_RANDOM``;
  - anything else: ``*``.

  Every process resumed also holds ``actor:`` and its own name.

Records the run keeps for the report only (the platform's PCONFIG log, read back only as a
minimum and maximum; the recorder's trace events, sorted by time and actor before anyone
sees them) are not state in this sense. The cores' conservative lookahead (running work
inline up to the next pending event) reads the event queue, but is transparent by design: it
never changes what happens or when.

**Search.** Sleep sets with footprints from the state where the events are tied. Depth
first, each tie explores its candidates in scheduling order, skipping those asleep; after a
candidate's subtree, it sleeps in its later siblings' subtrees while the steps taken there
are independent of it (a dependent step wakes it). When every candidate of a tie is asleep,
or the one event due next is, the run is equivalent to one already explored and is cut short
(``pruned``). Each complete run is one schedule of a distinct class; its ``tie_choices``
replay it exactly, without reduction.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from mktme_des.engine.ties import ChosenTies

ANY = "*"
Footprint = frozenset
NOTHING: frozenset = frozenset()
EVERYTHING: frozenset = frozenset({ANY})


def dependent(a: frozenset, b: frozenset) -> bool:
    """Whether two footprints conflict (see the module docstring)."""
    if not a or not b:
        return False
    if ANY in a or ANY in b or not a.isdisjoint(b):
        return True
    for x, y in ((a, b), (b, a)):
        if "hw" in x and any(t == "rng" or t.startswith("pkg:") for t in y):
            return True
        if "board" in x and any(t.startswith("flag:") for t in y):
            return True
    return False


class Stream:
    """A core's or an agent's ops, handed out one at a time: how many were taken tells where
    the actor is (a compiled generator shows no frame)."""

    def __init__(self, name: str, ops: list[tuple]) -> None:
        self.name = name
        self.ops = list(ops)
        self.pulled = 0

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> tuple:
        if self.pulled >= len(self.ops):
            raise StopIteration
        self.pulled += 1
        return self.ops[self.pulled - 1]


@dataclass
class Actors:
    """What the classifier knows of a run's processes that it cannot read from their frames:
    the cores' and agents' op streams."""

    streams: dict = field(default_factory=dict)  # Process -> Stream


HOTPLUG = frozenset({"online", "offline", "online_cpu", "offline_cpu"})
MEMORY = frozenset({"read", "write", "clflush"})
# What a kernel actor's step does at the start of an op (after its flags and time): the
# tokens it touches there, and whether the step surely ends there (at the system call's own
# first wait, or a core op's first wait: with another event due now, a core op always waits
# before it touches memory, see the module docstring). An op not ending there goes on to the
# next op when a check fails (its errno is logged and the actor moves on).
START: dict[str, tuple[frozenset, bool]] = {
    "compute": (NOTHING, True),
    "mmap": (NOTHING, True),
    "add_key": (NOTHING, True),
    "pconfig": (NOTHING, True),  # starts the PCONFIG process and waits for it
    "wbinvd": (frozenset({"hw"}), True),
    "munmap": (NOTHING, False),  # the actor's own VMA names
    "encrypt_mprotect": (frozenset({"serials"}), False),
    "update_key": (frozenset({"serials"}), False),
    "revoke": (frozenset({"serials"}), False),
    "invalidate": (frozenset({"serials"}), False),
    "swap_read": (frozenset({"kernel"}), False),
}


def _kernel_op(name: str, step) -> set[str]:
    """The tokens of a kernel actor's op (a :class:`~mktme_des.scenarios.kernel_ops.Step`),
    from wherever in it the actor is."""
    what = step.op.op
    if what == "compute":
        return set()
    if what == "mmap":
        return {f"mm:{name}"}
    if what == "keytable":
        return {f"pkg:{step.op.package}"}
    if what == "swap_read":
        return {"kernel"}
    if what in HOTPLUG:
        return {ANY}  # hotplug migrates every process's pages and takes every lock
    return {"kernel", "hw", "serials", f"mm:{name}"}


def _start(name: str, step) -> tuple[set[str], bool]:
    what = step.op.op
    if what in START:
        tokens, ends = START[what]
        return set(tokens), ends
    if what in MEMORY:  # its VMA and page table; then a fault's or the core op's wait
        return {f"mm:{name}"}, False
    if what == "keytable":
        return {f"pkg:{step.op.package}"}, False
    return _kernel_op(name, step), False


def _label(step) -> set[str]:
    return {f"flag:{step.label}"} if step.label else set()


def _from(name: str, steps: list, j: int, now: int) -> set[str]:
    """The tokens of a kernel actor's step that arrives before op ``j`` (waiting for its
    flags or its time, or at the start). A relative ``at`` waits for its flag and then a
    delay: the step ends at that wait."""
    out: set[str] = set()
    for step in steps[j:]:
        out |= {f"flag:{label}" for label in step.after}
        if step.at_label is not None:
            out.add(f"flag:{step.at_label[0]}")
            if step.at_label[1]:
                break  # it waits for a time after the flag: the step ends
        if step.at is not None and step.at > now:
            break  # it waits for its time: the step ends
        tokens, ends = _start(name, step)
        out |= tokens
        if ends:
            break
        out |= _label(step)  # a failed check logs the op, raises its flag and goes on
    return out


def _waits_before_op(gen) -> bool:
    """Whether a kernel actor waits at its own yield for an op's flag or time (rather than
    inside the op: a computation or a WBINVD)."""
    import linecache

    frame = gen.gi_frame
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    return "plat.flag(" in line or "step.at" in line


def _inside_memory_op(name: str, gen, step) -> set[str]:
    """What is left of a read, write or clflush the actor is inside: nothing shared but its
    page table once the core op is logged (a write may go on to its next line: a fault's or
    a core op's wait first); the memory access while it is not; anything while faulting."""
    g = gen.gi_yieldfrom
    while g is not None and not _compiled(g) and getattr(g, "gi_frame", None) is not None:
        if g.gi_code.co_name == "_core_op":
            log = g.gi_frame.f_locals.get("log")
            if log and log[0] is not None:
                return {f"mm:{name}"}
            return {"hw", f"mm:{name}"}
        if g.gi_code.co_name == "fault":
            break
        g = getattr(g, "gi_yieldfrom", None)
    return _kernel_op(name, step)


def _kernel_actor(gen, now: int) -> set[str]:
    loc = gen.gi_frame.f_locals
    name, steps = loc["name"], loc["steps"]
    out = {f"actor:{name}"}
    if inspect.getgeneratorstate(gen) == inspect.GEN_CREATED:
        return out | _from(name, steps, 0, now)
    cur = loc.get("step")
    index = next((i for i, o in enumerate(steps) if o is cur), None)
    if index is None:
        return {ANY}
    if gen.gi_yieldfrom is None and _waits_before_op(gen):
        return out | _from(name, steps, index, now)
    step = steps[index]
    inside = _inside_memory_op(name, gen, step) if step.op.op in MEMORY and \
        gen.gi_yieldfrom is not None else _kernel_op(name, step)
    return out | inside | _label(step) | _from(name, steps, index + 1, now)


class Classifier:
    """Footprints of a run's pending events (see the module docstring)."""

    def __init__(self, plat, actors: Actors) -> None:
        self.plat = plat
        self.actors = actors

    def event(self, ev) -> frozenset:
        callbacks = ev.callbacks
        out: set[str] = set()
        label = self._flag_label(ev)
        if label is not None:
            out.add(f"flag:{label}")
        if not callbacks:
            return frozenset(out)
        for cb in callbacks:
            out |= self._callback(cb)
            if ANY in out:
                return EVERYTHING
        return frozenset(out)

    def actor(self, ev) -> str:
        """The actor an event belongs to, for priorities: the process it resumes (a core or
        agent by its name, a kernel actor by its name, the kernel's per-package broadcast
        work and PCONFIG by their CPU, any other process by its function), or the
        callback's function; ``+`` joins several."""
        names = []
        for cb in ev.callbacks or ():
            proc = getattr(cb, "__self__", None)
            if proc is not None and getattr(cb, "__name__", "") == "_resume" and \
                    hasattr(proc, "_generator"):
                names.append(self._process_name(proc))
            else:
                names.append(getattr(cb, "__qualname__", type(cb).__name__))
        return "+".join(names) or type(ev).__name__

    def _process_name(self, proc) -> str:
        stream = self.actors.streams.get(proc)
        if stream is not None:
            return stream.name
        gen = proc._generator
        name = getattr(gen, "__qualname__", getattr(gen, "__name__", "process"))
        frame = None if _compiled(gen) else getattr(gen, "gi_frame", None)
        if frame is not None:
            loc = frame.f_locals
            if gen.gi_code.co_name == "kernel_actor":
                return str(loc.get("name"))
            if "cpu" in loc:
                return f"{name}/cpu{loc['cpu']}"
        return name

    def _flag_label(self, ev) -> str | None:
        for label, flag in self.plat.board.flags.items():
            if flag is ev:
                return label
        return None

    def _callback(self, cb) -> set[str]:
        proc = getattr(cb, "__self__", None)
        if proc is not None and getattr(cb, "__name__", "") == "_resume" and \
                hasattr(proc, "_generator"):
            return self._process(proc)
        qual = getattr(cb, "__qualname__", "")
        if qual == "Board.raise_flag.<locals>.<lambda>":
            for cell in cb.__closure__ or ():
                label = self._flag_label(cell.cell_contents)
                if label is not None:
                    return {f"flag:{label}"}
            return {ANY}
        if qual.startswith("MemorySystem."):
            return {"hw"}
        return {ANY}

    def _stream(self, proc, stream: Stream) -> set[str]:
        """A core or agent: its position is the op its stream handed out last."""
        from mktme_des.hw import ops as O

        now = self.plat.env.now
        mine = {f"actor:{stream.name}"}
        if type(proc._target).__name__ == "Initialize":
            first = stream.ops[0] if stream.ops else None
            if first is None:
                return mine
            if first[0] == O.AWAIT:
                label = _flag_of(first[3])
                flag = self.plat.board.flags.get(label)
                if flag is None or not flag.processed or not isinstance(first[3], str):
                    return mine | {f"flag:{label}"}  # the step ends waiting for it
            elif first[0] != O.SIGNAL and first[4] is not None and first[4] > now:
                return mine  # the step ends waiting for the op's time
            rest = stream.ops
        else:
            rest = stream.ops[max(0, stream.pulled - 1):]
        return mine | {"hw"} | _stream_flags(rest)

    def _process(self, proc) -> set[str]:
        now = self.plat.env.now
        gen = proc._generator
        stream = self.actors.streams.get(proc)
        if stream is not None:
            return self._stream(proc, stream)
        name = getattr(gen, "__name__", "")
        frame = None if _compiled(gen) else getattr(gen, "gi_frame", None)
        if frame is None:
            return {ANY}
        started = inspect.getgeneratorstate(gen) != inspect.GEN_CREATED
        if name == "kernel_actor" and gen.gi_code.co_filename.endswith("actors.py"):
            return _kernel_actor(gen, now)
        if name == "_on_lead" and gen.gi_code.co_filename.endswith("keys.py"):
            return {f"actor:lead{frame.f_locals['cpu']}"} | (set() if not started
                                                             else {"kernel"})
        if name == "pconfig" and gen.gi_code.co_filename.endswith("pconfig.py"):
            from mktme_des.hw import pconfig as pc

            loc = frame.f_locals
            pkg = self.plat.cores[loc["cpu"]].package
            out = {f"pkg:{pkg}", f"actor:pconfig{loc['cpu']}"}
            if loc["program"].command == pc.SET_KEY_RANDOM:
                out.add("rng")
            return out
        return {ANY}


# The modules setup.py compiles: their generators show no frame when compiled, so nothing is
# read from their frames in either build (the results must not depend on the build).
COMPILED = frozenset({"core.py", "memsys.py", "cache.py", "memctrl.py", "dram.py", "aes.py",
                      "server.py", "wakeup.py", "stats.py", "oracle.py", "synthetic.py"})


def _compiled(gen) -> bool:
    code = getattr(gen, "gi_code", None)
    return code is None or code.co_filename.rsplit("/", 1)[-1] in COMPILED


def _stream_flags(ops: list[tuple]) -> set[str]:
    """The flags a core's or an agent's ops wait for or raise."""
    from mktme_des.hw import ops as O

    return {f"flag:{_flag_of(op[3])}" for op in ops if op[0] in (O.AWAIT, O.SIGNAL)}


def _flag_of(arg) -> str:
    """The label an AWAIT or SIGNAL names (an AWAIT's may be ``(label, delay)``)."""
    return arg if isinstance(arg, str) else arg[0]


def _is_sync(code: int) -> bool:
    from mktme_des.hw import ops as O

    return code in (O.AWAIT, O.SIGNAL)


class Blocked(Exception):
    """The run reached a state whose every continuation is already explored."""


@dataclass
class Tie:
    """One tie met on a run: its candidates (event ids, in scheduling order), their
    footprints, the sleep set on arrival, the choice taken and the siblings done before."""

    eids: list[int]
    footprints: list[frozenset]
    asleep: frozenset  # event ids asleep on arrival
    choice: int
    done: list[int]  # candidate indices whose subtrees are explored


def pct_environment(seed: int, depth: int, steps: int):
    """A :class:`~mktme_des.engine.ties.PriorityTies` environment whose actors are named by
    the run's :class:`Classifier` (handed to it when the platform is built)."""
    from mktme_des.engine.ties import PriorityTies

    env = PriorityTies(seed, depth, steps, lambda ev: env.classify.actor(ev))
    env.classify = None
    return env


class ReducedTies(ChosenTies):
    """A :class:`ChosenTies` environment that keeps a sleep set (module docstring).

    ``plan`` gives, per tie on the path so far, the choice to take and the candidate indices
    already explored there; past it, the first candidate not asleep is taken. ``nodes``
    records every tie met. :class:`Blocked` ends a run whose continuations are all asleep."""

    def __init__(self, plan: list[tuple[int, list[int]]]) -> None:
        super().__init__([c for c, _ in plan])
        self.plan = plan
        self.nodes: list[Tie] = []
        self.sleep: dict[int, frozenset] = {}
        self.classify: Classifier | None = None

    def step(self) -> None:
        from heapq import heappop, heappush

        queue = self._queue
        if not queue:
            return super().step()
        key = queue[0][:2]
        if len(queue) > 1 and queue[1][:2] == key or len(queue) > 2 and queue[2][:2] == key:
            tied = []
            while queue and queue[0][:2] == key:
                tied.append(heappop(queue))
            fps = [self.classify.event(e[3]) for e in tied]
            eids = [e[2] for e in tied]
            i = len(self.taken)
            if i < len(self.plan):
                choice, done = self.plan[i][0], list(self.plan[i][1])
            else:
                done = []
                choice = next((j for j, eid in enumerate(eids) if eid not in self.sleep), None)
            self.nodes.append(Tie(eids, fps, frozenset(self.sleep), -1 if choice is None
                                  else choice, done))
            if choice is None:
                for entry in tied:
                    heappush(queue, entry)
                raise Blocked
            self.taken.append(choice)
            self.branching.append(len(tied))
            fp = fps[choice]
            sleep = {z: f for z, f in self.sleep.items()
                     if z != eids[choice] and not dependent(f, fp)}
            for d in done:
                if not dependent(fps[d], fp):
                    sleep[eids[d]] = fps[d]
            self.sleep = sleep
            first = tied.pop(choice)
            for entry in tied:
                heappush(queue, entry)
            heappush(queue, (first[0], first[1], -1, first[3]))
            return simpy_step(self)
        if self.sleep:
            eid = queue[0][2]
            if eid in self.sleep:
                raise Blocked
            fp = self.classify.event(queue[0][3])
            self.sleep = {z: f for z, f in self.sleep.items() if not dependent(f, fp)}
        return simpy_step(self)


def simpy_step(env) -> None:
    """SimPy's own step (past :class:`ChosenTies`' tie handling)."""
    import simpy

    simpy.Environment.step(env)


def next_plan(nodes: list[Tie]) -> list[tuple[int, list[int]]] | None:
    """The plan of the next run, depth first after a run that met ``nodes``; None when the
    tree is explored."""
    for k in range(len(nodes) - 1, -1, -1):
        node = nodes[k]
        done = node.done + ([node.choice] if node.choice >= 0 else [])
        for j in range(len(node.eids)):
            if j in done or node.eids[j] in node.asleep:
                continue
            return [(n.choice, n.done) for n in nodes[:k]] + [(j, done)]
    return None
