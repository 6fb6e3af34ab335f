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

logger = logging.getLogger(__name__)

WATCHED_PARTITION = "watched"


class Watches:
    def __init__(self, table: TableClient, clock=time.monotonic):
        self.table = table
        self._clock = clock
        self._marked_at: dict[str, float] = {}  # job key -> when this process last wrote its mark

    def mark_due(self, job_key: str, watch_seconds: float) -> bool:
        """Whether this process should write the job's mark now (none lately)."""
        marked = self._marked_at.get(job_key)
        return marked is None or self._clock() - marked >= watch_seconds / 4

    async def mark(self, job_key: str, job_id: str, until: datetime, watch_seconds: float) -> None:
        if not self.mark_due(job_key, watch_seconds):
            return
        self._marked_at[job_key] = self._clock()
        row = {"PartitionKey": WATCHED_PARTITION, "RowKey": job_key, "JobId": job_id, "WatchedUntil": until}
        async with storage_call("marking a job watched"):
            await self.table.upsert_entity(row, mode="replace", **RESENDABLE)

    async def active(self, now: datetime) -> list[tuple[str, str]]:
        """(job key, job id) of every job watched at ``now``; marks long expired are deleted."""
        found, expired = [], []
        async with storage_call("reading watched jobs"):
            async for row in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": WATCHED_PARTITION},
                                                       select=["RowKey", "JobId", "WatchedUntil"]):
                (found if row["WatchedUntil"] > now else expired).append((row["RowKey"], row["JobId"]))
            for job_key, _ in expired:
                await self.forget(job_key)
        return found

    async def forget(self, job_key: str) -> None:
        self._marked_at.pop(job_key, None)
        try:
            await self.table.delete_entity(WATCHED_PARTITION, job_key)
        except ResourceNotFoundError:
            pass
