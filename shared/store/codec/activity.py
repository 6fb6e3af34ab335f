"""What changed when, in the job index (``{prefix}jobs``): the rows that let the timers visit the
jobs that changed and the jobs still running, not every job that exists.

- partition ``changed``: a row per job per 10-second bucket in which the job was written to, keyed
  ``{bucket:019d}|{jobKey}`` (a job key holds no ``|``), so the changes since a bucket are one range;
- partition ``active``: a row per job that had tasks active or running when last visited;
- partition ``cursors``: where a timer's reading of ``changed`` stands (its bucket).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.events import TICKS_PER_SECOND, datetime_to_ticks, ticks_to_datetime

CHANGED_PARTITION = "changed"
ACTIVE_PARTITION = "active"
CURSORS_PARTITION = "cursors"
BUCKET_TICKS = 10 * TICKS_PER_SECOND  # a job is marked changed at most once per bucket per process


def bucket_of(at: datetime) -> int:
    return datetime_to_ticks(at) // BUCKET_TICKS


def bucket_start(bucket: int) -> datetime:
    return ticks_to_datetime(bucket * BUCKET_TICKS)


def bucket_key(bucket: int) -> str:
    return f"{bucket:019d}"


def changed_row(job_key: str, bucket: int) -> dict[str, Any]:
    return {"PartitionKey": CHANGED_PARTITION, "RowKey": f"{bucket_key(bucket)}|{job_key}"}


def job_key_of_changed(row: Mapping[str, Any]) -> str:
    return row["RowKey"].partition("|")[2]


def active_row(job_key: str) -> dict[str, Any]:
    return {"PartitionKey": ACTIVE_PARTITION, "RowKey": job_key}


def cursor_row(name: str, bucket: int) -> dict[str, Any]:
    return {"PartitionKey": CURSORS_PARTITION, "RowKey": name, "Bucket": bucket}


def cursor_of(row: Mapping[str, Any] | None) -> int | None:
    return None if row is None else int(row["Bucket"])
