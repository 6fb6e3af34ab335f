"""Progress history: reading and writing a job's points and head row (their rows:
``shared.store.codec.history``), in ``HISTORY_TABLES`` tables ``{prefix}historyNN``, a job's by a
hash of its key.

Spread over tables because Azurite reads a table's every row per query where Azure reads a
partition's: with every job's points in one table, ``RecordProgress``'s first run over 50,000 jobs
had not ended after 45 minutes (each job's read scanned the rows the run itself was writing). A
table is created on its first write; reads of one not there see no rows.

Deployments from before kept every job in one table, ``{prefix}history`` (the legacy table).
``RecordProgress``'s first runs after an upgrade move it (``move_legacy``), whole jobs at a time,
each job's head row written last and removed first; until the legacy table is gone, a job whose head
row is still there is read from there.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableErrorCode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.progress import Episodes, Point
from shared.store.codec.history import (
    HEAD_ROW,
    POINT_PREFIX,
    POINTS_END,
    head_of_row,
    head_row,
    point_key,
    point_of_row,
    point_row,
    table_time,
)
from shared.store.tables import RESENDABLE, create_table, delete_partition, delete_rows, storage_call, upsert_all

RECENT_PAGE = 100  # points read per page of a job's recent window
HISTORY_TABLES = 64  # about 1,600 rows a table for 50,000 finished jobs (a head and a point each)
JOBS_MOVED_AT_ONCE = 16  # legacy jobs one move_legacy writes concurrently


class ProgressHistory:
    def __init__(self, service: TableServiceClient, prefix: str):
        self._tables = [service.get_table_client(f"{prefix}history{n:02d}") for n in range(HISTORY_TABLES)]
        self.legacy = service.get_table_client(f"{prefix}history")
        self._legacy_gone = False  # learnt once per process: nothing recreates it

    def table_of(self, job_key: str) -> TableClient:
        """The table a job's history is written to."""
        digest = hashlib.blake2b(job_key.encode(), digest_size=4).digest()
        return self._tables[int.from_bytes(digest, "big") % HISTORY_TABLES]

    async def recent(self, job_key: str, start: datetime) -> tuple[Episodes, int, list[Point]]:
        """The job's alert episodes, how many points it holds, and its points since ``start``
        (oldest first) with the newest point at or before ``start``: the counts in force then."""
        episodes, held, newest_first = Episodes(), 0, []
        async with storage_call("reading progress"):
            rows = (await self._table_holding(job_key)).query_entities(
                "PartitionKey eq @pk", parameters={"pk": job_key}, results_per_page=RECENT_PAGE
            )
            try:
                async for row in rows:
                    if row["RowKey"] == HEAD_ROW:
                        episodes, held = head_of_row(row)
                        continue
                    point = point_of_row(row)
                    newest_first.append(point)
                    if point.at <= start:
                        break
            except ResourceNotFoundError:  # no table: none of its jobs has a point yet
                pass
        return episodes, held, newest_first[::-1]

    async def since(self, job_key: str, start: datetime | None) -> list[Point]:
        """Every point held after ``start`` (all of them without), oldest first."""
        upper = POINTS_END if start is None else point_key(start)  # newer points have smaller keys
        filter_ = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        parameters = {"pk": job_key, "low": POINT_PREFIX, "high": upper}
        rows = await self._rows(job_key, filter_, parameters, None)
        return [point_of_row(row) for row in reversed(rows)]

    async def record(self, job_key: str, point: Point | None, episodes: Episodes, held: int) -> None:
        """Write a new point (if any) and the head in one transaction (idempotent: resent if cut)."""
        operations = [("upsert", head_row(job_key, episodes, held))]
        if point is not None:
            operations.append(("upsert", point_row(job_key, point)))
        table = self.table_of(job_key)
        async with storage_call("recording progress"):
            try:
                await table.submit_transaction(operations, **RESENDABLE)
            except HttpResponseError as failure:
                if failure.status_code != 404:  # an upsert's only 404: the table is not there yet
                    raise
                await create_table(table)
                await table.submit_transaction(operations, **RESENDABLE)

    async def point_times(self, job_key: str) -> list[datetime]:
        """When each held point was taken, oldest first."""
        filter_ = "PartitionKey eq @pk and RowKey ge @low"
        rows = await self._rows(job_key, filter_, {"pk": job_key, "low": POINT_PREFIX}, ["At"])
        return [table_time(row["At"]) for row in reversed(rows)]

    async def drop_points(self, job_key: str, times: list[datetime]) -> None:
        async with storage_call("thinning progress"):
            await delete_rows(
                self.table_of(job_key), [{"PartitionKey": job_key, "RowKey": point_key(at)} for at in times]
            )

    async def delete_job(self, job_key: str) -> int:
        removed = 0
        tables = [self.table_of(job_key)] + ([] if self._legacy_gone else [self.legacy])
        async with storage_call("removing progress"):
            for table in tables:
                try:
                    removed += await delete_partition(table, job_key)
                except ResourceNotFoundError:
                    pass
        return removed

    async def move_legacy(self, most_rows: int) -> bool:
        """Move whole jobs' history, about ``most_rows`` rows, out of the legacy table into their own
        tables; whether the legacy table is gone (the last move deletes it). Safe to cut anywhere: a
        job moved again rewrites the same rows."""
        if self._legacy_gone:
            return True
        async with storage_call("moving progress history"):
            jobs: list[list[dict]] = []  # each job's rows, head first (rows come by key)
            read, cut = 0, False
            try:
                async for row in self.legacy.list_entities():
                    if not jobs or jobs[-1][0]["PartitionKey"] != row["PartitionKey"]:
                        if read >= most_rows:  # the jobs read so far are whole: move them, the rest next time
                            cut = True
                            break
                        jobs.append([])
                    jobs[-1].append(dict(row))
                    read += 1
            except ResourceNotFoundError:
                self._legacy_gone = True
                return True
            await asyncio.gather(*(create_table(table) for table in self._tables))
            gate = asyncio.Semaphore(JOBS_MOVED_AT_ONCE)

            async def move(rows: list[dict]) -> None:
                async with gate:
                    await self._move_job(rows)

            await asyncio.gather(*(move(rows) for rows in jobs))
            if not cut:
                await self.legacy.delete_table()
                self._legacy_gone = True
        return self._legacy_gone

    async def _move_job(self, rows: list[dict]) -> None:
        """One job's legacy rows into its table: points first, the head last (its arrival is what
        makes readers read there); removed from the legacy table head first, for the same reason."""
        job_key = rows[0]["PartitionKey"]
        heads = [row for row in rows if row["RowKey"] == HEAD_ROW]
        points = [row for row in rows if row["RowKey"] != HEAD_ROW]
        await upsert_all(self.table_of(job_key), [*points, *heads])
        await delete_rows(self.legacy, [*heads, *points])

    async def _table_holding(self, job_key: str) -> TableClient:
        """The table holding the job's history: the legacy one while the job's head row is there."""
        if not self._legacy_gone:
            try:
                await self.legacy.get_entity(job_key, HEAD_ROW, select=["PartitionKey"])
                return self.legacy
            except ResourceNotFoundError as missing:
                if getattr(missing, "error_code", None) == TableErrorCode.TABLE_NOT_FOUND:
                    self._legacy_gone = True
        return self.table_of(job_key)

    async def _rows(self, job_key: str, filter_: str, parameters: dict, select: list[str] | None) -> list[dict]:
        async with storage_call("reading progress"):
            table = await self._table_holding(job_key)
            try:
                return [row async for row in table.query_entities(filter_, parameters=parameters, select=select)]
            except ResourceNotFoundError:  # no table: none of its jobs has a point yet
                return []
