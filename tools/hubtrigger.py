"""The Event Hubs trigger of the local function host, with the real host's semantics:

* one reader per partition; each invocation gets up to ``maxEventBatchSize`` messages (host.json
  ``extensions.eventHubs``, default 100) as ``List[func.EventHubEvent]`` (cardinality many);
* when the function raises, the function.json ``retry`` policy (fixedDelay or exponentialBackoff,
  ``maxRetryCount`` -1 = forever) runs the same batch again; the partition's checkpoint only
  moves after it succeeds or the retries are spent (then the batch is skipped, as Azure does);
* checkpoints are kept per consumer group by the hub, so a killed host resumes after the last
  checkpoint and gets the in-flight batch again (at-least-once).

The hub is the Batch simulator's (``tools.batchsim.hub``), named by the trigger's connection
setting as ``Endpoint=http://host:port/``; a real Event Hubs namespace cannot be read here.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import azure.functions as func

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVENT_BATCH_SIZE = 100
POLL_WAIT_MS = 500
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)")


@dataclass(frozen=True)
class RetryPolicy:
    """function.json ``retry``: how often and how long to wait before running a batch again."""

    strategy: str = "none"
    max_retry_count: int = 0  # -1: forever
    delay: float = 0.0  # fixedDelay
    minimum_interval: float = 0.0  # exponentialBackoff
    maximum_interval: float = 0.0

    @classmethod
    def from_function_json(cls, retry: dict | None, scale: float = 1.0) -> RetryPolicy:
        if not retry:
            return cls()
        strategy = retry["strategy"]
        if strategy == "fixedDelay":
            return cls(strategy, int(retry["maxRetryCount"]), delay=timespan_seconds(retry["delayInterval"]) * scale)
        if strategy == "exponentialBackoff":
            return cls(
                strategy,
                int(retry["maxRetryCount"]),
                minimum_interval=timespan_seconds(retry["minimumInterval"]) * scale,
                maximum_interval=timespan_seconds(retry["maximumInterval"]) * scale,
            )
        raise ValueError(f"retry strategy {strategy!r} is not fixedDelay or exponentialBackoff")

    def wait_before(self, retry: int) -> float | None:
        """Seconds to wait before retry number ``retry`` (1, 2, ...); None when retries are spent."""
        if self.strategy == "none" or (self.max_retry_count != -1 and retry > self.max_retry_count):
            return None
        if self.strategy == "fixedDelay":
            return self.delay
        return min(self.maximum_interval, self.minimum_interval * 2 ** (retry - 1))


def timespan_seconds(text: str) -> float:
    """A .NET TimeSpan ``[d.]hh:mm:ss[.fff]`` -> seconds."""
    match = _TIMESPAN.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a TimeSpan like 00:00:05")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86_400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def hub_endpoint(connection: str) -> str:
    """``Endpoint=http://127.0.0.1:8099/;...`` -> the hub's base URL."""
    parts = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    endpoint = parts.get("Endpoint", "")
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(
            "the local host reads only the Batch simulator's hub: set the connection to "
            "Endpoint=http://127.0.0.1:PORT/ (a real Event Hubs namespace needs func start)"
        )
    return endpoint.rstrip("/")


class HubTrigger:
    """Feeds one eventHubTrigger function from every partition of its hub."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        hub: str,
        consumer_group: str,
        max_batch: int,
        retry: RetryPolicy,
        invoke: Callable[[list[func.EventHubEvent]], Awaitable[Any]],
    ):
        self.name, self.endpoint, self.hub, self.group = name, endpoint, hub, consumer_group
        self.max_batch, self.retry, self.invoke = max_batch, retry, invoke
        self.invocations = 0
        self.retries = 0

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            partitions = await self._get(session, "/partitions")
            await asyncio.gather(*(self._read(session, int(p)) for p in partitions["partitionIds"]))

    async def _read(self, session: aiohttp.ClientSession, partition: int) -> None:
        checkpoint_path = f"/consumergroups/{self.group}/checkpoints/{partition}"
        position = (await self._get(session, checkpoint_path))["sequenceNumber"] + 1
        while True:
            try:
                messages = (
                    await self._get(
                        session,
                        f"/partitions/{partition}/messages",
                        {"from": position, "max": self.max_batch, "waitMs": POLL_WAIT_MS},
                    )
                )["messages"]
            except (TimeoutError, aiohttp.ClientError):
                logger.warning("hub unreachable; trying again", extra={"function": self.name, "partition": partition})
                await asyncio.sleep(1)
                continue
            if not messages:
                continue
            await self._deliver(partition, messages)
            position = messages[-1]["sequenceNumber"] + 1
            async with session.put(self._url(checkpoint_path), json={"sequenceNumber": position - 1}) as response:
                response.raise_for_status()

    async def _deliver(self, partition: int, messages: list[dict]) -> None:
        events = [
            func.EventHubEvent(
                body=m["body"].encode(),
                sequence_number=m["sequenceNumber"],
                enqueued_time=datetime.fromisoformat(m["enqueuedTimeUtc"]),
                partition_key=None,
            )
            for m in messages
        ]
        retry = 0
        while True:
            self.invocations += 1
            try:
                await self.invoke(events)
                return
            except Exception:
                retry += 1
                wait = self.retry.wait_before(retry)
                if wait is None:
                    logger.exception(
                        "batch failed and its retries are spent: the checkpoint moves past it",
                        extra={"function": self.name, "partition": partition},
                    )
                    return
                self.retries += 1
                logger.warning(
                    "batch failed; running it again in %.2fs (retry %d)",
                    wait,
                    retry,
                    extra={"function": self.name, "partition": partition},
                )
                await asyncio.sleep(wait)

    def _url(self, path: str) -> str:
        return f"{self.endpoint}/eventhubs/{self.hub}{path}"

    async def _get(self, session: aiohttp.ClientSession, path: str, params: dict | None = None) -> dict:
        async with session.get(self._url(path), params=params) as response:
            response.raise_for_status()
            return await response.json(content_type=None)
