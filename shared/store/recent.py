"""Recent reads served from memory: what a job's counts poll is answered from under load.

A reading younger than ``max_age`` is answered at once; once half of that has passed, one read at a
time refreshes it in the background, so a steadily polled job never makes its reader wait for
storage and is never older than about ``max_age`` plus one read. A reading past ``max_age`` (a job
nobody polled lately) is read afresh, callers of the same key sharing that one read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    value: T
    read_at: float


class RecentReads(Generic[T]):
    def __init__(self, max_age: float, capacity: int = 1000, clock: Callable[[], float] = time.monotonic):
        self.max_age, self.capacity, self._clock = max_age, capacity, clock
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._reads: dict[Hashable, asyncio.Task] = {}  # key -> the read in flight

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        if self.max_age <= 0:
            return await read()
        entry = self._entries.get(key)
        age = None if entry is None else self._clock() - entry.read_at
        if entry is not None and age is not None and age < self.max_age:
            self._entries.move_to_end(key)
            if age >= self.max_age / 2 and key not in self._reads:
                self._start_read(key, read)
            return entry.value
        task = self._reads.get(key) or self._start_read(key, read)
        return await asyncio.shield(task)  # a caller cancelled does not cancel the others' read

    def _start_read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> asyncio.Task:
        started = self._clock()

        async def refresh() -> T:
            try:
                value = await read()
            finally:
                self._reads.pop(key, None)
            self._entries[key] = _Entry(value, started)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return value

        task = self._reads[key] = asyncio.get_running_loop().create_task(refresh())
        task.add_done_callback(_log_failed_refresh)
        return task

    async def close(self) -> None:
        reads = list(self._reads.values())
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)


def _log_failed_refresh(task: asyncio.Task) -> None:
    # A background refresh's failure reaches no caller: the stale reading is kept and the next
    # poll past half its age tries again. A caller waiting on it gets the error itself.
    if not task.cancelled() and task.exception() is not None:
        logger.warning("refreshing a recent read failed: %s", task.exception())
