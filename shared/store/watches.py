"""Watched jobs (``{prefix}jobs``, PartitionKey ``watched``): a job someone polled lately, kept
fresh by the watched sync (``WatchedSync``) within seconds, whatever the service log's delay.

A read of one job (its counts or its history) marks it watched until ``WATCH_MINUTES`` from now.
Marks are written at most once a quarter of that per job and process, so polling costs storage
almost nothing; the watched sync reads the one small partition each run.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.store.tables import RESENDABLE, storage_call
from shared.throttle import Throttle

logger = logging.getLogger(__name__)

WATCHED_PARTITION = "watched"


class Watches:
    def __init__(self, table: TableClient, clock=time.monotonic):
        self.table = table
        self._clock = clock
        self._marks = Throttle()  # this process writes a job's mark once a quarter of the watch

    async def mark(self, job_key: str, until: datetime, watch_seconds: float) -> None:
        if not self._marks.admit(job_key, self._clock(), watch_seconds / 4):
            return
        row = {"PartitionKey": WATCHED_PARTITION, "RowKey": job_key, "WatchedUntil": until}
        async with storage_call("marking a job watched"):
            await self.table.upsert_entity(row, mode="replace", **RESENDABLE)

    async def active(self, now: datetime) -> list[str]:
        """The keys of the jobs watched at ``now``; expired marks are deleted."""
        found: list[str] = []
        expired: list[str] = []
        async with storage_call("reading watched jobs"):
            async for row in self.table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": WATCHED_PARTITION}, select=["RowKey", "WatchedUntil"]
            ):
                (found if row["WatchedUntil"] > now else expired).append(row["RowKey"])
            for job_key in expired:
                await self.forget(job_key)
        return found

    async def forget(self, job_key: str) -> None:
        self._marks.forget(job_key)
        try:
            await self.table.delete_entity(WATCHED_PARTITION, job_key)
        except ResourceNotFoundError:
            pass
