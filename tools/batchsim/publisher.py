"""Publish outbox events to a webhook in Event Grid batches, with faults, retrying like Event Grid."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import asdict, dataclass, field

import aiohttp

from tools.batchsim.model import OutboxEvent

MAX_BATCH_BYTES = 1024 * 1024
# Event Grid's schedule (10 s, 30 s, 1 m, 5 m, 10 m, 30 m, 1 h, ... up to 30 attempts in 24 h), compressed for
# local runs and cut to its first twelve attempts: with six, a delivery facing the chaos test's storage faults
# (each call failing over a third of the time) was sometimes dead-lettered where Event Grid would go on.
RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0)
DEAD_LETTER_STATUSES = {400, 413}  # Event Grid dead-letters these at once


@dataclass(frozen=True)
class Faults:
    drop: float = 0.0  # fraction of events never delivered
    duplicate: float = 0.0  # fraction of events delivered twice
    reorder: bool = False  # shuffle across the whole publication
    delay_ms: int = 0  # random delay before each batch, up to this


@dataclass
class PublishReport:
    events: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    batches: int = 0
    retries: int = 0
    dead_lettered: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    dropped_sequences: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


async def publish(
    events: list[OutboxEvent],
    url: str,
    *,
    headers: dict[str, str] | None = None,
    max_events_per_batch: int = 1000,
    schema: str = "eventgrid",
    faults: Faults = Faults(),
    concurrency: int = 4,
    seed: int = 0,
) -> PublishReport:
    rng = random.Random(seed)
    report = PublishReport(events=len(events))
    kept = []
    for event in events:
        if rng.random() < faults.drop:
            report.dropped += 1
            report.dropped_sequences.append(event.sequence)
        else:
            kept.append(event)
    copies = [event for event in kept if rng.random() < faults.duplicate]
    report.duplicated = len(copies)
    outgoing = kept + copies
    if faults.reorder:
        rng.shuffle(outgoing)
    else:
        outgoing.sort(key=lambda event: event.sequence)
    render = OutboxEvent.to_cloud_event if schema == "cloudevents" else OutboxEvent.to_event_grid
    batches = list(_batches([render(event) for event in outgoing], max_events_per_batch))
    report.batches = len(batches)
    content_type = "application/cloudevents-batch+json" if schema == "cloudevents" else "application/json"
    send_headers = {"Content-Type": content_type, **(headers or {})}
    gate = asyncio.Semaphore(concurrency)

    async def send(session: aiohttp.ClientSession, body: bytes, count: int) -> None:
        async with gate:
            if faults.delay_ms:
                await asyncio.sleep(rng.uniform(0, faults.delay_ms / 1000))
            for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
                await asyncio.sleep(delay)
                if attempt:
                    report.retries += 1
                try:
                    async with session.post(url, data=body, headers=send_headers) as response:
                        await response.read()
                        status = response.status
                except (TimeoutError, aiohttp.ClientError):
                    status = 0
                report.statuses[str(status)] = report.statuses.get(str(status), 0) + 1
                if 200 <= status <= 204:
                    report.delivered += count
                    return
                if status in DEAD_LETTER_STATUSES:
                    break
            report.dead_lettered += count

    timeout = aiohttp.ClientTimeout(total=30)  # Event Grid's own delivery timeout
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(send(session, body, count) for body, count in batches))
    return report


def _batches(rendered: list[dict], max_events: int):
    """Split into batches of at most max_events and 1 MB, as Event Grid does."""
    batch: list[bytes] = []
    size = 2
    for event in rendered:
        encoded = json.dumps(event, separators=(",", ":")).encode()
        if batch and (len(batch) >= max_events or size + len(encoded) + 1 > MAX_BATCH_BYTES):
            yield b"[" + b",".join(batch) + b"]", len(batch)
            batch, size = [], 2
        batch.append(encoded)
        size += len(encoded) + 1
    if batch:
        yield b"[" + b",".join(batch) + b"]", len(batch)
