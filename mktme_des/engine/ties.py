"""The order of events due at the same instant.

SimPy processes events due at the same time (and priority) in the order they were scheduled:
deterministic, but only one of the orders real hardware could produce when two things happen
"at once". Two other orders can be asked for; in both, priorities are kept (an urgent event
still goes before a normal one due at the same time):

* :class:`ShuffledTies` orders each tie by a seeded random draw, so a scenario can be rerun
  under other same-time orders (what ``scenario explore`` samples) and any one of them
  replayed exactly from its seed;
* :class:`ChosenTies` takes the order from a list of choices, one per tie met, and records
  how many events each tie had, so an explorer can enumerate every order, depth first
  (``scenario explore --exhaustive``), and any one of them can be replayed from its choices;
* :class:`PriorityTies` decides each tie by the priorities of the actors whose events are
  tied, with a few random priority changes (PCT), and records its choices as
  :class:`ChosenTies` does, so each run replays from them.
"""

from __future__ import annotations

import random
from heapq import heappop, heappush

import simpy
from simpy.events import NORMAL


class ShuffledTies(simpy.Environment):
    """A SimPy environment whose same-time, same-priority events run in a seeded random order."""

    def __init__(self, seed: int, initial_time: int = 0) -> None:
        super().__init__(initial_time)
        self._draw = random.Random(seed).random

    def schedule(self, event, priority=NORMAL, delay=0) -> None:  # noqa: ANN001 - SimPy's signature
        # The draw decides ties; the event id keeps the key unique (and the heap total).
        heappush(self._queue, (self._now + delay, priority, (self._draw(), next(self._eid)), event))


class ChosenTies(simpy.Environment):
    """A SimPy environment that runs tied events in a chosen order.

    At the ``i``-th step where several events are due at the same time and priority, the
    ``choices[i]``-th of them in scheduling order runs first (0 once the choices run out).
    ``taken`` and ``branching`` record, per such step, the choice made and how many events
    were tied. With ``draw`` (a ``random.Random``), a tie met after the choices run out is
    decided by a uniform draw instead of 0: a random schedule whose ``taken`` replays it
    exactly as ``choices`` (what ``mktme-des hunt`` samples)."""

    def __init__(self, choices: list[int], initial_time: int = 0,
                 draw: random.Random | None = None) -> None:
        super().__init__(initial_time)
        self.choices = list(choices)
        self.draw = draw
        self.taken: list[int] = []
        self.branching: list[int] = []

    def step(self) -> None:
        queue = self._queue
        if len(queue) > 1 and queue[1][:2] == queue[0][:2] or \
                len(queue) > 2 and queue[2][:2] == queue[0][:2]:
            key = queue[0][:2]
            tied = []
            while queue and queue[0][:2] == key:
                tied.append(heappop(queue))
            choice = self.choose(tied)
            self.taken.append(choice)
            self.branching.append(len(tied))
            first = tied.pop(choice)
            for entry in tied:
                heappush(queue, entry)
            heappush(queue, (first[0], first[1], -1, first[3]))  # ids are >= 0: it goes first
        super().step()

    def choose(self, tied: list[tuple]) -> int:
        """Which of the ``tied`` queue entries (in scheduling order) runs first, at the tie
        numbered ``len(self.taken)``."""
        i = len(self.taken)
        if i < len(self.choices):
            return min(self.choices[i], len(tied) - 1)
        return self.draw.randrange(len(tied)) if self.draw is not None else 0


class PriorityTies(ChosenTies):
    """Ties decided by actor priorities, in the style of PCT (Burckhardt, Kothari, Musuvathi
    and Nagarakatte, ASPLOS 2010).

    Every actor (``actor_of(event)``: the process an event resumes) gets a random priority
    when it is first met, above ``depth``: a uniformly random order of the actors. At each
    tie the event of the highest-priority actor runs first (two events of one actor: the one
    scheduled first). ``depth - 1`` change points are drawn uniformly among the ``steps``
    ties expected in a run (its number of ties in the file's own order); after the tie at
    change point ``i`` (1 to ``depth - 1``), the actor that ran first there drops to priority
    ``i``, below every actor not yet changed. PCT's guarantee, stated for ``n`` actors and
    ``k`` steps: a bug that needs ``d`` ordering constraints is found in one run with
    probability at least ``1 / (n k^(d-1))``, where uniform shuffling can need exponentially
    many runs. ``taken`` records every choice, so ``tie_choices`` replays the run."""

    def __init__(self, seed: int, depth: int, steps: int, actor_of) -> None:  # noqa: ANN001
        super().__init__([])
        self.rng = random.Random(seed)
        self.depth = depth
        self.actor_of = actor_of
        self.priority: dict[str, float] = {}
        self.change: dict[int, int] = {}
        for i in range(1, depth):
            self.change.setdefault(self.rng.randrange(max(1, steps)), i)

    def choose(self, tied: list[tuple]) -> int:
        actors = [self.actor_of(entry[3]) for entry in tied]
        for actor in actors:
            if actor not in self.priority:
                self.priority[actor] = self.depth + self.rng.random()
        choice = max(range(len(tied)), key=lambda j: (self.priority[actors[j]], -j))
        index = len(self.taken)
        if index in self.change:
            self.priority[actors[choice]] = self.change[index]
        return choice


def environment(tie_seed: int = 0, tie_choices: list[int] | None = None) -> simpy.Environment:
    """SimPy's own environment, or one whose ties follow ``tie_choices`` (when given) or a
    shuffle seeded with ``tie_seed`` (when not 0)."""
    if tie_choices is not None:
        return ChosenTies(tie_choices)
    return simpy.Environment() if not tie_seed else ShuffledTies(tie_seed)
