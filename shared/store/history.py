"""Progress history (``{prefix}history``): one partition per job, newest point first.

Rows: ``head`` (how many points the job holds, which alerts were raised) and one row per point,
keyed ``p`` + (MAX_TICKS - ticks), so a partition read from its start meets the head, then the
newest points: the recent window costs one query page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.data.tables.aio import TableClient

from shared.counting import Counts
from shared.events import datetime_to_ticks
from shared.progress import Episodes, Point
from shared.store.tables import RESENDABLE, delete_partition, delete_rows, storage_call

HEAD_ROW = "head"
POINT_PREFIX = "p"
MAX_TICKS = 10**19 - 1  # 100-ns ticks since the epoch stay below this until the year 33658
RECENT_PAGE = 100  # points read per page of a job's recent window


def point_key(at: datetime) -> str:
    return f"{POINT_PREFIX}{MAX_TICKS - datetime_to_ticks(at):019d}"


def point_row(job_key: str, point: Point) -> dict[str, Any]:
    return {
        "PartitionKey": job_key,
        "RowKey": point_key(point.at),
        "At": point.at,
        "Active": point.counts.active,
        "Running": point.counts.running,
        "Succeeded": point.counts.succeeded,
        "Failed": point.counts.failed,
        "CompletedSince": point.completed_since,
    }


def point_of_row(row: dict) -> Point:
    succeeded, failed = row["Succeeded"], row["Failed"]
    return Point(
        _utc(row["At"]),
        Counts(row["Active"], row["Running"], succeeded + failed, succeeded, failed),
        _utc(row["CompletedSince"]),
    )


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
                    episodes, held = _episodes_of(row), row.get("Points", 0)
                    continue
                point = point_of_row(row)
                newest_first.append(point)
                if point.at <= start:
                    break
        return episodes, held, newest_first[::-1]

    async def since(self, job_key: str, start: datetime | None) -> list[Point]:
        """Every point held after ``start`` (all of them without), oldest first."""
        upper = f"{POINT_PREFIX}~" if start is None else point_key(start)  # newer points have smaller keys
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
        head = {
            "PartitionKey": job_key,
            "RowKey": HEAD_ROW,
            "Points": held,
            "StallLogged": episodes.stall_logged,
            "FailingSince": episodes.failing_since,
        }
        operations = [("upsert", head)] + ([("upsert", point_row(job_key, point))] if point else [])
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
        return [_utc(row["At"]) for row in reversed(rows)]

    async def drop_points(self, job_key: str, times: list[datetime]) -> None:
        async with storage_call("thinning progress"):
            await delete_rows(self.table, [{"PartitionKey": job_key, "RowKey": point_key(at)} for at in times])

    async def delete_job(self, job_key: str) -> int:
        async with storage_call("removing progress"):
            return await delete_partition(self.table, job_key)


def _episodes_of(row: dict) -> Episodes:
    stall, failing = row.get("StallLogged"), row.get("FailingSince")
    return Episodes(None if stall is None else _utc(stall), None if failing is None else _utc(failing))


def _utc(moment: datetime) -> datetime:
    """Table Storage hands back its own datetime subclass; the domain compares plain UTC datetimes."""
    return datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
        tzinfo=UTC,
    )
