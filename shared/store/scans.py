"""Validation listings (``{prefix}scans``): what each List Tasks page of a pass showed, per shard,
kept until that shard's sweep (PartitionKey ``{jobKey}|{scanId}``, RowKey ``{shard:02x}-{pageId}``)."""
from __future__ import annotations

import base64

from azure.data.tables.aio import TableClient

from shared.counting import TaskStatus
from shared.store.codec import listing_blob, listing_entries, scan_partition
from shared.store.queries import stream_rows
from shared.store.tables import delete_rows, storage_call, upsert_all


class ScanListings:
    def __init__(self, table: TableClient):
        self.table = table

    async def record(self, job_key: str, scan_id: str, page_id: str,
                     listed: dict[int, list[tuple[str, str, TaskStatus]]]) -> None:
        """Keep what one page (``page_id``, unique in the scan) showed, per shard (idempotent)."""
        rows = [{"PartitionKey": scan_partition(job_key, scan_id), "RowKey": f"{shard:02x}-{page_id}",
                 "Listed": listing_blob(entries)}
                for shard, entries in sorted(listed.items())]
        async with storage_call("recording a listing page"):
            await upsert_all(self.table, rows)

    async def in_shard(self, job_key: str, scan_id: str, shard: int) -> dict[str, tuple[str, TaskStatus]]:
        """Everything the scan listed for one shard: task key -> (task id, status)."""
        listed: dict[str, tuple[str, TaskStatus]] = {}
        async with storage_call("reading a listing"):
            async for row in stream_rows(self.table, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                                         {"pk": scan_partition(job_key, scan_id), "low": f"{shard:02x}-",
                                          "high": f"{shard:02x}."}, ["Listed"]):
                for key, task_id, status in listing_entries(base64.b64decode(row["Listed"])):  # Edm.Binary
                    listed[key] = (task_id, status)
        return listed

    async def drop(self, job_key: str, before: str | None = None, scan_id: str | None = None) -> None:
        """Remove listing rows of a job: one scan's, those of scans older than ``before``, or all."""
        low, high = f"{job_key}|", f"{job_key}}}"
        if scan_id is not None:
            low, high = scan_partition(job_key, scan_id), scan_partition(job_key, scan_id) + "\x00"
        elif before is not None:
            high = scan_partition(job_key, before)
        async with storage_call("removing listings"):
            rows = [row async for row in self.table.query_entities(
                "PartitionKey ge @low and PartitionKey lt @high",
                parameters={"low": low, "high": high}, select=["PartitionKey", "RowKey"])]
            await delete_rows(self.table, rows)
