"""The earliest-fit pipeline stage used by the AES engine, DRAM banks and the channel."""

from __future__ import annotations

import random

import pytest

from mktme_des.engine.server import Stage


def fifo(times: list[int], length: int) -> list[int]:
    free, out = 0, []
    for t in times:
        s = max(t, free)
        out.append(s)
        free = s + length
    return out


@pytest.mark.parametrize("seed", range(5))
def test_time_ordered_requests_get_the_fifo_schedule(seed):
    rng = random.Random(seed)
    times = sorted(rng.randrange(0, 5000) for _ in range(400))
    stage = Stage(7)
    assert [stage.reserve(t) for t in times] == fifo(times, 7)


@pytest.mark.parametrize("seed", range(5))
def test_out_of_order_requests_never_overlap_nor_start_early(seed):
    rng = random.Random(seed)
    stage = Stage(5)
    booked = []
    arrival = 0
    for _ in range(500):
        arrival += rng.randrange(0, 4)  # arrivals at the controller in time order
        t = arrival + rng.randrange(0, 60)  # reach the stage out of order
        s = stage.reserve(t, floor=arrival)
        assert s >= t
        booked.append((s, s + 5))
    booked.sort()
    for (_a0, a1), (b0, _b1) in zip(booked, booked[1:], strict=False):
        assert a1 <= b0, "two bookings overlap"


def test_an_early_request_is_not_stuck_behind_a_later_one():
    stage = Stage(10)
    assert stage.reserve(1000) == 1000
    assert stage.reserve(0) == 0  # a next-free counter would have said 1010


def test_variable_lengths():
    stage = Stage(10)
    assert stage.reserve(0, length=30) == 0
    assert stage.reserve(5) == 30
    assert stage.reserve(35, length=2) == 40


def reference_reserve(starts: list[int], ends: list[int], t: int, size: int, low: int) -> int:
    """Earliest fit over plain sorted lists, forgetting bookings as the stage's rule says: an
    independent statement of what :meth:`Stage.reserve` computes."""
    i = 0
    while i < len(ends) and ends[i] <= t:
        i += 1
    s = t
    while i < len(starts) and starts[i] < s + size:
        s = max(s, ends[i])
        i += 1
    n = len(ends)
    starts.insert(i, s)
    ends.insert(i, s + size)
    if n > 32 and ends[16] <= low:
        cut = sum(1 for e in ends if e <= low)
        del starts[:cut], ends[:cut]
    return s


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("forget", [True, False])
def test_bookings_match_a_plain_list_statement_of_the_rule(seed, forget):
    """Random lengths, out-of-order arrivals and floors, long enough for the stage to make
    room many times (and, when nothing may be forgotten, to grow): the same starts and the
    same bookings kept as the list version."""
    rng = random.Random(seed)
    stage = Stage(rng.randrange(1, 9))
    starts: list[int] = []
    ends: list[int] = []
    arrival = 0
    for _ in range(3000):
        arrival += rng.randrange(0, 6)
        t = arrival + rng.choice([0, 0, 1, rng.randrange(0, 200)])
        length = rng.choice([-1, -1, rng.randrange(1, 40)])  # negative: the interval
        size = stage.interval if length < 0 else length
        floor = arrival if forget else 0
        assert stage.reserve(t, length, floor) == reference_reserve(starts, ends, t, size, floor)
    assert stage.bookings() == list(zip(starts, ends, strict=True))
