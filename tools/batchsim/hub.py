"""A local stand-in for Event Hubs carrying Batch's service log (development only).

Azure Monitor writes the service log of a Batch account to an event hub as messages of
``{"records": [...]}``, several records each; the Functions host reads them per partition and
checkpoints per consumer group. Here the simulator plays both Azure Monitor (``pump``: the log
outbox -> messages, with loss, duplicates and reordering on request, and special-task and pool
records mixed in) and the hub (append-only partitions, checkpoints), served over HTTP:

    GET  /eventhubs/{hub}/partitions                                  {"partitionIds": ["0", "1"]}
    GET  /eventhubs/{hub}/partitions/{p}/messages?from=N&max=M&waitMs=W
         {"messages": [{"sequenceNumber", "enqueuedTimeUtc", "body"}]}    (long poll up to W ms)
    GET  /eventhubs/{hub}/consumergroups/{cg}/checkpoints/{p}          {"sequenceNumber": n | -1}
    PUT  same, {"sequenceNumber": n}

The local function host (tools.funchost) reads it for ``eventHubTrigger`` functions whose
connection setting is ``Endpoint=http://...`` (see docs/development.md, "Running locally").
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from tools.batchsim.model import RESOURCE_ID, OutboxEvent

PARTITIONS = 2


@dataclass(frozen=True)
class LogFaults:
    drop: float = 0.0  # fraction of records never written
    duplicate: float = 0.0  # fraction of records written twice
    reorder: bool = False  # shuffle records across the whole pump
    noise: float = 0.1  # special-task and pool records added, per task record
    export_delay: ExportDelay | None = None  # None: each message reaches the hub at once


@dataclass(frozen=True)
class ExportDelay:
    """How late Azure Monitor hands a message of resource logs to the hub: log-normal around
    ``median`` seconds, 1% of messages past ``tail``, none later than ``tail`` (no latency is
    promised for resource logs; tens of seconds to minutes are common)."""

    median: float
    tail: float

    def __post_init__(self) -> None:
        if not 0 < self.median <= self.tail:
            raise ValueError("an export delay needs 0 < median <= tail (seconds)")

    def draw(self, rng: random.Random) -> float:
        if self.tail == self.median:
            return self.median
        sigma = math.log(self.tail / self.median) / 2.326  # the 99th percentile of a normal is 2.326 sigma
        return min(self.tail, rng.lognormvariate(math.log(self.median), sigma))


@dataclass
class PumpReport:
    records: int = 0  # task records Batch logged
    dropped: int = 0
    duplicated: int = 0
    noise: int = 0
    messages: int = 0
    dropped_sequences: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)  # each message's export delay (seconds)

    def to_json(self) -> dict:
        return asdict(self)


class EventHub:
    """Append-only partitions with sequence numbers, and checkpoints per consumer group."""

    def __init__(self, partitions: int = PARTITIONS):
        self.partitions: list[list[dict]] = [[] for _ in range(partitions)]
        self.checkpoints: dict[tuple[str, int], int] = {}
        self._next_partition = 0
        self._arrived = asyncio.Event()

    def send(self, body: str) -> None:
        """Round-robin over partitions, as a sender without a partition key gets."""
        partition = self.partitions[self._next_partition]
        self._next_partition = (self._next_partition + 1) % len(self.partitions)
        partition.append(
            {"sequenceNumber": len(partition), "body": body, "enqueuedTimeUtc": datetime.now(UTC).isoformat()}
        )
        self._arrived.set()

    async def read(self, partition: int, start: int, limit: int, wait_seconds: float) -> list[dict]:
        log = self.partitions[partition]
        if start >= len(log) and wait_seconds > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait_seconds)
            except TimeoutError:
                pass
        return log[start : start + limit]


def pump(
    events: list[OutboxEvent],
    hub: EventHub,
    faults: LogFaults = LogFaults(),
    records_per_message: int = 50,
    seed: int = 0,
) -> PumpReport:
    """Write the service-log records of ``events`` to the hub, several per message."""
    rng = random.Random(seed)
    report = PumpReport()
    records: list[dict] = []
    for event in events:
        for record in event.to_service_log():
            report.records += 1
            if rng.random() < faults.drop:
                report.dropped += 1
                report.dropped_sequences.append(event.sequence)
                continue
            records.append(record)
            if rng.random() < faults.duplicate:
                report.duplicated += 1
                records.append(record)
            if rng.random() < faults.noise:
                report.noise += 1
                records.append(_noise(rng, event.job_id, record["time"]))
    if faults.reorder:
        rng.shuffle(records)
    for start in range(0, len(records), records_per_message):
        body = json.dumps({"records": records[start : start + records_per_message]}, separators=(",", ":"))
        report.messages += 1
        if faults.export_delay is None:
            hub.send(body)
        else:  # enqueued when exported: a message exported sooner is read first, as in the hub
            delay = faults.export_delay.draw(rng)
            report.delays.append(round(delay, 3))
            asyncio.get_running_loop().call_later(delay, hub.send, body)
    return report


def _noise(rng: random.Random, job_id: str, time: str) -> dict:
    """A record that is not a job task's state change: a special task's, or a pool's."""
    base = {"time": time, "resourceId": RESOURCE_ID, "category": "ServiceLog", "operationVersion": "2017-01-01"}
    kind = rng.randrange(3)
    if kind == 0:
        return {
            **base,
            "operationName": "TaskStartEvent",
            "properties": {
                "jobId": job_id,
                "taskName": "jobpreparation",
                "taskType": "JobPreparation",
                "systemTaskVersion": 0,
                "nodeInfo": {"poolId": "simpool", "nodeId": "tvmps_sim_0"},
                "executionInfo": {"startTime": time, "retryCount": 0},
            },
        }
    if kind == 1:
        return {
            **base,
            "operationName": "TaskCompleteEvent",
            "properties": {
                "jobId": "",
                "taskName": "starttask",
                "taskType": "StartTask",
                "nodeInfo": {"poolId": "simpool", "nodeId": "tvmps_sim_0"},
                "executionInfo": {
                    "startTime": time,
                    "endTime": time,
                    "exitCode": 0,
                    "retryCount": 0,
                    "result": "Success",
                },
            },
        }
    return {
        **base,
        "operationName": "PoolResizeCompleteEvent",
        "properties": {
            "id": "simpool",
            "nodeDeallocationOption": "invalid",
            "currentDedicatedNodes": 4,
            "targetDedicatedNodes": 4,
            "currentLowPriorityNodes": 0,
            "targetLowPriorityNodes": 0,
            "enableAutoScale": False,
            "isAutoPool": False,
            "startTime": time,
            "endTime": time,
            "resultCode": "Success",
            "resultMessage": "The operation succeeded",
        },
    }
