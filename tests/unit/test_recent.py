"""Recent reads (shared.store.recent): a polled key is answered from memory and refreshed behind the poll."""

import asyncio

import pytest

from shared.store.recent import RecentReads


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Source:
    """A read that counts its calls and can be held open or made to fail."""

    def __init__(self):
        self.calls, self.value, self.gate, self.failure = 0, "v0", None, None

    async def read(self):
        self.calls += 1
        value = self.value
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return value


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_polled_key_is_answered_at_once_and_refreshed_once_behind_the_poll():
    clock, source = Clock(), Source()
    reads = RecentReads(1.0, clock=clock)
    assert await reads.get("j", source.read) == "v0" and source.calls == 1
    source.value = "v1"
    clock.now = 0.4  # under half the age: from memory, no read
    assert await reads.get("j", source.read) == "v0" and source.calls == 1
    clock.now = 0.6  # past half: still answered from memory, one read starts behind it
    source.gate = asyncio.Event()
    assert [await reads.get("j", source.read) for _ in range(5)] == ["v0"] * 5
    await settle()
    assert source.calls == 2  # one refresh, however many polls
    source.gate.set()
    await settle()
    assert await reads.get("j", source.read) == "v1"


async def test_a_reading_past_its_age_is_read_again_and_concurrent_callers_share_the_read():
    clock, source = Clock(), Source()
    reads = RecentReads(1.0, clock=clock)
    await reads.get("j", source.read)
    clock.now, source.value, source.gate = 1.0, "v1", asyncio.Event()
    waiting = [asyncio.create_task(reads.get("j", source.read)) for _ in range(4)]
    await settle()
    assert not any(task.done() for task in waiting) and source.calls == 2
    source.gate.set()
    assert await asyncio.gather(*waiting) == ["v1"] * 4


async def test_the_age_counts_from_when_the_read_began():
    clock, source = Clock(), Source()
    reads = RecentReads(1.0, clock=clock)
    source.gate = asyncio.Event()
    first = asyncio.create_task(reads.get("j", source.read))
    await settle()
    clock.now = 0.7  # the read took 0.7 s: its reading is already past half its age
    source.gate.set()
    await first
    source.gate = None
    await reads.get("j", source.read)
    await settle()
    assert source.calls == 2


async def test_a_failed_refresh_keeps_the_reading_and_a_waiting_caller_gets_the_error():
    clock, source = Clock(), Source()
    reads = RecentReads(1.0, clock=clock)
    await reads.get("j", source.read)
    clock.now, source.failure = 0.6, ConnectionError("storage down")
    assert await reads.get("j", source.read) == "v0"  # the background refresh fails quietly
    await settle()
    clock.now = 1.5
    with pytest.raises(ConnectionError):
        await reads.get("j", source.read)


async def test_no_age_means_every_call_reads_and_memory_is_bounded():
    source = Source()
    uncached = RecentReads(0)
    for _ in range(3):
        await uncached.get("j", source.read)
    assert source.calls == 3
    bounded = RecentReads(10.0, capacity=3)
    for key in range(10):
        await bounded.get(key, source.read)
    assert len(bounded) == 3
