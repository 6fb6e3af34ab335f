"""Progress history (``{prefix}historyNN``, shared.store.history): one partition per job, newest point first.

Rows: ``head`` (how many points the job holds, which alerts were raised) and one row per point,
keyed ``p`` + (MAX_TICKS - ticks), so a partition read from its start meets the head, then the
newest points: the recent window costs one query page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.counting import Counts
from shared.events import datetime_to_ticks
from shared.progress import Episodes, Point

HEAD_ROW = "head"
POINT_PREFIX = "p"
POINTS_END = f"{POINT_PREFIX}~"  # sorts after every point's key
MAX_TICKS = 10**19 - 1  # 100-ns ticks since the epoch stay below this until the year 33658


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


def point_of_row(row: Mapping[str, Any]) -> Point:
    succeeded, failed = row["Succeeded"], row["Failed"]
    return Point(
        table_time(row["At"]),
        Counts(row["Active"], row["Running"], succeeded + failed, succeeded, failed),
        table_time(row["CompletedSince"]),
    )


def head_row(job_key: str, episodes: Episodes, held: int) -> dict[str, Any]:
    return {
        "PartitionKey": job_key,
        "RowKey": HEAD_ROW,
        "Points": held,
        "StallLogged": episodes.stall_logged,
        "FailingSince": episodes.failing_since,
    }


def head_of_row(row: Mapping[str, Any]) -> tuple[Episodes, int]:
    """The job's alert episodes and how many points it holds."""
    stall, failing = row.get("StallLogged"), row.get("FailingSince")
    episodes = Episodes(None if stall is None else table_time(stall), None if failing is None else table_time(failing))
    return episodes, row.get("Points", 0)


def table_time(moment: datetime) -> datetime:
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
