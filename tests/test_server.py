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
