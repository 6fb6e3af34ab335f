"""Validation listings: what each List Tasks page of a pass showed, per shard, kept until the sweeps.

Each scan's listing is a table of its own (``{prefix}s{hash of jobKey|scanId}``; one partition,
RowKey ``{shard:02x}-{pageId}``, so a page's rows for every shard are one transaction and a sweep
reads its shard's rows as one range). A finished scan is dropped with one Delete Table -- a
1,000,000-task job's listing is ~64,000 rows, which took a minute and a half to delete row by row.
``{prefix}scans`` indexes the listing tables (PartitionKey ``jobKey``, RowKey ``scanId``), so that a
job's abandoned scans, or all of them when the job is removed, can be found.
"""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.counting import TaskStatus
from shared.store.codec.listings import (
    LISTING_PARTS,
    listed_of_row,
    listing_row,
    scan_index_row,
    scan_partition,
    shard_query,
)
from shared.store.queries import stream_rows
from shared.store.tables import RESENDABLE, create_table, delete_rows, hashed_table_name, storage_call, upsert_all


class ScanListings:
    def __init__(self, service: TableServiceClient, prefix: str):
        self._service, self._prefix = service, prefix
        self.table = service.get_table_client(f"{prefix}scans")  # the index

    def _listing(self, job_key: str, scan_id: str) -> TableClient:
        return self._service.get_table_client(hashed_table_name(self._prefix, "s", scan_partition(job_key, scan_id)))

    async def record(
        self, job_key: str, scan_id: str, page_id: str, listed: dict[int, list[tuple[str, TaskStatus]]]
    ) -> None:
        """Keep what one page (``page_id``, unique in the scan) showed, per shard (idempotent). The
        scan's first page creates its table, indexed first so that no table is ever left unfound."""
        rows = [listing_row(job_key, scan_id, shard, page_id, entries) for shard, entries in sorted(listed.items())]
        listing = self._listing(job_key, scan_id)
        async with storage_call("recording a listing page"):
            try:
                await upsert_all(listing, rows)
            except HttpResponseError as error:
                if error.status_code != 404:  # 404: the scan's table does not exist yet
                    raise
                await self.table.upsert_entity(scan_index_row(job_key, scan_id), **RESENDABLE)
                await create_table(listing)
                await upsert_all(listing, rows)

    async def in_shard(self, job_key: str, scan_id: str, shard: int) -> dict[str, tuple[str, TaskStatus]]:
        """Everything the scan listed for one shard: task key -> (task id, status)."""
        listed: dict[str, tuple[str, TaskStatus]] = {}
        query, parameters = shard_query(job_key, scan_id, shard)
        async with storage_call("reading a listing"):
            try:
                async for row in stream_rows(self._listing(job_key, scan_id), query, parameters, LISTING_PARTS):
                    for task_id, status in listed_of_row(row):
                        listed[task_id.lower()] = (task_id, status)
            except ResourceNotFoundError:  # no table: the scan listed no tasks
                pass
        return listed

    async def drop(self, job_key: str, before: str | None = None, scan_id: str | None = None) -> None:
        """Remove a job's listings: one scan's, those of scans older than ``before``, or all."""
        query, parameters = "PartitionKey eq @job", {"job": job_key}
        if scan_id is not None:
            query, parameters = query + " and RowKey eq @scan", {**parameters, "scan": scan_id}
        elif before is not None:
            query, parameters = query + " and RowKey lt @before", {**parameters, "before": before}
        async with storage_call("removing listings"):
            indexed = [
                row
                async for row in self.table.query_entities(
                    query, parameters=parameters, select=["PartitionKey", "RowKey"]
                )
            ]
            for row in indexed:
                await self._listing(job_key, row["RowKey"]).delete_table()
            await delete_rows(self.table, indexed)
