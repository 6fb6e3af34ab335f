"""The account's Batch request budget (shared.batch.RequestBudget) on a clock the test sets: never
more than its rate in any second, requests in the order they asked, and a refusal pausing every
caller until its Retry-After."""

import asyncio
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.batch import RequestBudget, retry_after_seconds


class Clock:
    """Virtual time: sleeping moves it on at once."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def releases(per_second: int, arrivals: list[float], refusals: dict[int, float]) -> list[float]:
    """When each request is let go, asked for one after another at ``arrivals``; after the request
    numbered n, Batch refuses it with ``refusals[n]`` seconds to wait."""
    clock = Clock()
    budget = RequestBudget(per_second, clock=clock, sleep=clock.sleep)
    released = []

    async def run():
        for n, arrival in enumerate(arrivals):
            clock.now = max(clock.now, arrival)
            await budget.acquire()
            released.append(clock.now)
            if n in refusals:
                budget.refused(refusals[n])

    asyncio.run(run())
    return released


@settings(max_examples=200, deadline=None)
@given(
    per_second=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 0.5, allow_nan=False), min_size=1, max_size=200),
    refused=st.dictionaries(st.integers(0, 199), st.floats(0.1, 5, allow_nan=False), max_size=5),
)
def test_never_more_than_the_rate_in_any_second_and_nothing_inside_a_pause(per_second, gaps, refused):
    arrivals = [sum(gaps[: n + 1]) for n in range(len(gaps))]
    released = releases(per_second, arrivals, refused)
    assert all(later >= earlier for earlier, later in pairwise(released))  # in order
    assert all(go >= arrival for go, arrival in zip(released, arrivals, strict=True))
    for n, start in enumerate(released):  # any second starting at a release holds at most per_second
        assert sum(start <= other < start + 1 - 1e-9 for other in released[n:]) <= per_second
    for n, wait in refused.items():
        if n < len(released) - 1:
            assert released[n + 1] >= released[n] + wait - 1e-9  # the next one waited out the pause


def test_an_idle_budget_lets_a_request_go_at_once_and_spaces_a_burst():
    assert releases(4, [0, 0, 0, 0, 10], {}) == [0, 0.25, 0.5, 0.75, 10]


async def test_callers_waiting_when_a_refusal_comes_queue_again_behind_the_pause():
    clock = Clock()
    gates: list[asyncio.Future] = []

    async def held_sleep(seconds: float) -> None:  # each waiter wakes only when the test says
        gate = asyncio.get_running_loop().create_future()
        gates.append(gate)
        await gate
        clock.now = max(clock.now, gate.result())

    budget = RequestBudget(10, clock=clock, sleep=held_sleep)
    await budget.acquire()  # at 0
    second = asyncio.create_task(budget.acquire())  # due at 0.1
    await asyncio.sleep(0)
    budget.refused(3.0)  # the first was refused while the second waited
    gates.pop().set_result(0.1)
    await asyncio.sleep(0)
    assert not second.done()  # woke at 0.1 inside the pause: waits again
    gates.pop().set_result(3.0)
    await second
    assert clock.now == 3.0


def test_retry_after_in_milliseconds_seconds_or_a_date():
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"Retry-After": "7"}) == 7
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0  # in the past
    assert retry_after_seconds({}) is None and retry_after_seconds({"Retry-After": "soon"}) is None
