"""Which jobs changed and which are still running (rows: ``shared.store.codec.activity``), so that a
timer's cost follows what changes, not what exists.

The write path marks a job changed before it applies anything to it (so a write that fails and is
sent again is marked again): one row per job per 10-second bucket, written once per bucket by this
process, all of a delivery's jobs in one transaction. A reader of the changes keeps a cursor and
reads every bucket from it on, the current one included; it moves the cursor one bucket behind the
time it read at, so a mark written while it read is read again next time rather than missed. Marks
go once every reader's cursor has passed them (RecordProgress and SummarizeJobs read them).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.store.codec.activity import (
    ACTIVE_PARTITION,
    CHANGED_PARTITION,
    CURSORS_PARTITION,
    active_row,
    bucket_key,
    bucket_of,
    changed_row,
    cursor_of,
    cursor_row,
    job_key_of_changed,
)
from shared.store.tables import RESENDABLE, delete_rows, storage_call, upsert_all

MARKED_JOBS_KEPT = 100_000  # this process's memory of which bucket it marked each job in


class JobActivity:
    def __init__(self, table: TableClient):
        self.table = table
        self._marked: dict[str, int] = {}  # job key -> the bucket this process last marked it in

    async def mark_changed(self, job_keys: Iterable[str], at: datetime) -> None:
        bucket = bucket_of(at)
        due = [key for key in dict.fromkeys(job_keys) if self._marked.get(key) != bucket]
        if not due:
            return
        async with storage_call("marking jobs changed"):
            await upsert_all(self.table, [changed_row(key, bucket) for key in due])
        if len(self._marked) > MARKED_JOBS_KEPT:
            self._marked.clear()  # forgetting costs a mark written twice, never one missed
        self._marked.update((key, bucket) for key in due)

    async def changed_since(self, bucket: int) -> set[str]:
        """The jobs marked changed in ``bucket`` or later."""
        async with storage_call("reading changed jobs"):
            return {
                job_key_of_changed(row)
                async for row in self.table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @low",
                    parameters={"pk": CHANGED_PARTITION, "low": bucket_key(bucket)},
                    select=["RowKey"],
                )
            }

    async def drop_read_changes(self) -> int:
        """Delete the marks every reader has read (those before the oldest cursor); how many."""
        async with storage_call("dropping old change marks"):
            cursors = [
                int(row["Bucket"])
                async for row in self.table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": CURSORS_PARTITION}, select=["Bucket"]
                )
            ]
            if not cursors:
                return 0
            rows = [
                row
                async for row in self.table.query_entities(
                    "PartitionKey eq @pk and RowKey lt @high",
                    parameters={"pk": CHANGED_PARTITION, "high": bucket_key(min(cursors))},
                    select=["PartitionKey", "RowKey"],
                )
            ]
            await delete_rows(self.table, rows)
        return len(rows)

    async def active(self) -> set[str]:
        """The jobs that had tasks active or running when last visited."""
        async with storage_call("reading active jobs"):
            return {
                row["RowKey"]
                async for row in self.table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": ACTIVE_PARTITION}, select=["RowKey"]
                )
            }

    async def set_active(self, job_key: str, active: bool) -> None:
        async with storage_call("recording a job active or not"):
            if active:
                await self.table.upsert_entity(active_row(job_key), **RESENDABLE)
                return
            try:
                await self.table.delete_entity(ACTIVE_PARTITION, job_key)
            except ResourceNotFoundError:
                pass

    async def cursor(self, name: str) -> int | None:
        async with storage_call("reading a cursor"):
            try:
                return cursor_of(await self.table.get_entity(CURSORS_PARTITION, name))
            except ResourceNotFoundError:
                return None

    async def move_cursor(self, name: str, bucket: int) -> None:
        async with storage_call("moving a cursor"):
            await self.table.upsert_entity(cursor_row(name, bucket), mode="replace", **RESENDABLE)
