"""Progress history (``{prefix}history``): reading and writing a job's points and head row (their
rows: ``shared.store.codec.history``)."""

from __future__ import annotations

from datetime import datetime

from azure.data.tables.aio import TableClient

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
from shared.store.tables import RESENDABLE, delete_partition, delete_rows, storage_call

RECENT_PAGE = 100  # points read per page of a job's recent window


class ProgressHistory:
    def __init__(self, table: TableClient):
        self.table = table

    async def recent(self, job_key: str, start: datetime) -> tuple[Episodes, int, list[Point]]:
        """The job's alert episodes, how many points it holds, and its points since ``start``
        (oldest first) with the newest point at or before ``start``: the counts in force then."""
        episodes, held, newest_first = Episodes(), 0, []
        async with storage_call("reading progress"):
            rows = self.table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": job_key}, results_per_page=RECENT_PAGE
            )
            async for row in rows:
                if row["RowKey"] == HEAD_ROW:
                    episodes, held = head_of_row(row)
                    continue
                point = point_of_row(row)
                newest_first.append(point)
                if point.at <= start:
                    break
        return episodes, held, newest_first[::-1]

    async def since(self, job_key: str, start: datetime | None) -> list[Point]:
        """Every point held after ``start`` (all of them without), oldest first."""
        upper = POINTS_END if start is None else point_key(start)  # newer points have smaller keys
        async with storage_call("reading progress"):
            rows = [
                point_of_row(row)
                async for row in self.table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                    parameters={"pk": job_key, "low": POINT_PREFIX, "high": upper},
                )
            ]
        return rows[::-1]

    async def record(self, job_key: str, point: Point | None, episodes: Episodes, held: int) -> None:
        """Write a new point (if any) and the head in one transaction (idempotent: resent if cut)."""
        operations = [("upsert", head_row(job_key, episodes, held))]
        if point is not None:
            operations.append(("upsert", point_row(job_key, point)))
        async with storage_call("recording progress"):
            await self.table.submit_transaction(operations, **RESENDABLE)

    async def point_times(self, job_key: str) -> list[datetime]:
        """When each held point was taken, oldest first."""
        async with storage_call("reading progress"):
            rows = [
                row
                async for row in self.table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @low",
                    parameters={"pk": job_key, "low": POINT_PREFIX},
                    select=["At"],
                )
            ]
        return [table_time(row["At"]) for row in reversed(rows)]

    async def drop_points(self, job_key: str, times: list[datetime]) -> None:
        async with storage_call("thinning progress"):
            await delete_rows(self.table, [{"PartitionKey": job_key, "RowKey": point_key(at)} for at in times])

    async def delete_job(self, job_key: str) -> int:
        async with storage_call("removing progress"):
            return await delete_partition(self.table, job_key)
