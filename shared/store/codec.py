"""The row codec, pure: how tasks, counters, jobs, listings and raw events look as Table entities.

Nothing here does I/O, so every rule of the layout (docs/design.md, "How exactly-once works") can be tested alone.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from shared.counting import COUNT_NAMES, RESULT_OF_VALUE, STATE_OF_VALUE, ZERO, Counts, TaskStatus
from shared.errors import InvalidContinuationError
from shared.store.layout import NO_MARKS, Marks, mark_fields
from shared.store.records import BatchReported, JobCounts, JobRecord, SyncPosition

COUNTER_ROW = "!counts"  # '!' sorts before every character a task key can hold
JOBS_PARTITION = "jobs"
LEASES_PARTITION = "leases"
RAW_TEXT_LIMIT = 30_000  # characters kept as plain text; longer raw events are stored compressed
BINARY_PROPERTY_BYTES = 64_000  # a binary property holds at most 64 KiB
RAW_MAX_BYTES = 900_000  # an entity holds at most 1 MiB
DELETED = "deleted"  # a task row's State once Batch deleted the task
COUNTER_COLUMNS = [f"{name.capitalize()}{suffix}" for name in COUNT_NAMES for suffix in ("", "Slots")]
TASK_COLUMNS = ["RowKey", "State", "Result", "Slots", "Version"]


def partition_key(job_key: str, shard: int) -> str:
    return f"{job_key}|{shard:02x}"


def shard_of(task_key: str, partitions: int) -> int:
    return zlib.crc32(task_key.encode()) % partitions


def task_row(pk: str, task_key: str, status: TaskStatus, at: datetime) -> dict[str, Any]:
    return {
        "PartitionKey": pk,
        "RowKey": task_key,
        "State": DELETED if status.state is None else status.state.value,
        "Result": status.result.value if status.result else "",
        "Slots": status.required_slots,
        "Version": status.version,
        "UpdatedAt": at,
    }


def status_of_row(row: dict) -> TaskStatus:
    state = None if row["State"] == DELETED else STATE_OF_VALUE[row["State"]]
    result = RESULT_OF_VALUE[row["Result"]] if row.get("Result") else None
    return TaskStatus(state, result, int(row["Slots"]), row["Version"])


def counts_of_rows(tally: Mapping[tuple[str, str, int], int]) -> tuple[Counts, Counts]:
    """Task and slot counts of task rows tallied by (State, Result, Slots): a partition's rows are
    counted per kind, not one Counts per row."""
    tasks = slots = ZERO
    for (state, result, required_slots), rows in tally.items():
        status = status_of_row({"State": state, "Result": result, "Slots": required_slots, "Version": ""})
        tasks, slots = tasks + status.task_counts() * rows, slots + status.slot_counts() * rows
    return tasks, slots


def counter_row(pk: str, tasks: Counts, slots: Counts, at: datetime, marks: Marks = NO_MARKS) -> dict[str, Any]:
    """A partition's counter row; its reshard marks (shared.store.layout) travel with every write."""
    row: dict[str, Any] = {"PartitionKey": pk, "RowKey": COUNTER_ROW, "LastUpdatedAt": at, **mark_fields(marks)}
    for name in COUNT_NAMES:
        row[name.capitalize()] = getattr(tasks, name)
        row[f"{name.capitalize()}Slots"] = getattr(slots, name)
    return row


def counts_of_row(row: dict | None) -> tuple[Counts, Counts]:
    if row is None:
        return ZERO, ZERO
    # `or 0`: a property missing from an entity may come back as null under $select
    tasks = Counts(*(int(row.get(name.capitalize()) or 0) for name in COUNT_NAMES))
    slots = Counts(*(int(row.get(f"{name.capitalize()}Slots") or 0) for name in COUNT_NAMES))
    return tasks, slots


def sum_counters(
    job: JobRecord, counters: Iterable[dict | None], counted_twice: Iterable[tuple[Counts, Counts]] = ()
) -> JobCounts:
    """A job's counts: its counter rows summed, less what a reshard's batch in flight put in two."""
    tasks, slots, updated = ZERO, ZERO, None
    for twice_tasks, twice_slots in counted_twice:
        tasks, slots = tasks - twice_tasks, slots - twice_slots
    for row in counters:
        if row is None:
            continue
        row_tasks, row_slots = counts_of_row(row)
        tasks, slots = tasks + row_tasks, slots + row_slots
        row_updated = row.get("LastUpdatedAt")
        if row_updated is not None and (updated is None or row_updated > updated):
            updated = row_updated
    return JobCounts(job, tasks, slots, updated)


def job_of_row(row: dict) -> JobRecord:
    return JobRecord(
        job_key=row["RowKey"],
        job_id=row["JobId"],
        partitions=int(row["Partitions"]),
        first_seen_at=row["FirstSeenAt"],
        validation_status=row.get("ValidationStatus", "unvalidated"),
        last_validated_at=row.get("LastValidatedAt"),
        validation_note=row.get("ValidationNote") or None,
        last_validation=json.loads(row["LastValidation"]) if row.get("LastValidation") else None,
        created_span=_span_of(row["CreatedSpan"]) if row.get("CreatedSpan") else None,
        resharding_to=int(row["ReshardingTo"]) if row.get("ReshardingTo") else None,
        batch_reported=batch_reported_of(row.get("BatchReported")),
    )


def batch_reported_text(report: BatchReported | None) -> str:
    """The ``BatchReported`` property: empty while Batch's counts agree with ours."""
    if report is None:
        return ""
    return json.dumps(
        {"taskCounts": report.task_counts, "at": report.at.isoformat(), "since": report.since.isoformat()},
        separators=(",", ":"),
    )


def batch_reported_of(text: str | None) -> BatchReported | None:
    if not text:
        return None
    value = json.loads(text)
    return BatchReported(
        value["taskCounts"], datetime.fromisoformat(value["at"]), datetime.fromisoformat(value["since"])
    )


def ticks_text(ticks: int | None) -> str:
    return "" if ticks is None else f"{ticks:019d}"  # text: sorts like the number, any size


def optional_ticks(text: str | None) -> int | None:
    return int(text) if text else None


def scan_partition(job_key: str, scan_id: str) -> str:
    return f"{job_key}|{scan_id}"


def binary_parts(data: bytes) -> list[bytes]:
    """``data`` cut into pieces a binary property can hold, in order."""
    return [data[start : start + BINARY_PROPERTY_BYTES] for start in range(0, len(data), BINARY_PROPERTY_BYTES)]


# A listing row's properties, in order: one shard's part of a page is usually a few KB, but 1,000
# random 64-character ids with random versions compress to ~80 KB, more than one binary property holds.
LISTING_PARTS = ("Listed", *(f"Listed{n}" for n in range(1, 15)))  # a row holds at most 1 MiB


def listing_properties(entries: Iterable[tuple[str, TaskStatus]]) -> dict[str, bytes]:
    """One shard's part of a listed page as row properties: (task id, status) pairs as compressed
    JSON, over as many of LISTING_PARTS as it needs. The key is the id lower-cased, so it is not kept
    (half the bytes for mixed-case ids). Level 1: a pass compresses a million of these, and level 6
    made them only ~8% smaller at ~1.7x the CPU."""
    blob = zlib.compress(
        json.dumps(
            [[task_id, *_status_to_list(status)] for task_id, status in entries], separators=(",", ":")
        ).encode(),
        1,
    )
    return {LISTING_PARTS[n]: part for n, part in enumerate(binary_parts(blob))}


def listing_entries(parts: Iterable[bytes]) -> list[tuple[str, TaskStatus]]:
    """The (task id, status) pairs of a listing row's parts, in LISTING_PARTS order."""
    return [(task_id, _status_from_list(status)) for task_id, *status in json.loads(zlib.decompress(b"".join(parts)))]


def _status_to_list(status: TaskStatus) -> list:
    return [
        status.state.value if status.state else None,
        status.result.value if status.result else None,
        status.required_slots,
        status.version,
    ]


def _status_from_list(values: list) -> TaskStatus:
    state, result, slots, version = values
    return TaskStatus(
        STATE_OF_VALUE[state] if state else None, RESULT_OF_VALUE[result] if result else None, slots, version
    )


def raw_text_of(row: dict) -> str:
    """The raw event text of a rejected-event row, whether stored plain or compressed."""
    if "Raw" in row:
        return row["Raw"]
    data = b"".join(bytes(row[f"RawDeflate{i}"]) for i in range(int(row["RawChunks"])))
    return zlib.decompress(data).decode()


def raw_properties(raw: str) -> dict[str, Any]:
    if len(raw) <= RAW_TEXT_LIMIT:
        return {"Raw": raw, "RawLength": len(raw)}
    packed = zlib.compress(raw.encode(), 6)
    if len(packed) > RAW_MAX_BYTES:  # incompressible and huge: keep a readable head rather than fail the delivery
        return {"Raw": raw[:RAW_TEXT_LIMIT], "RawLength": len(raw), "RawTruncated": True}
    parts = binary_parts(packed)
    return {"RawLength": len(raw), "RawChunks": len(parts), **{f"RawDeflate{i}": part for i, part in enumerate(parts)}}


def encode_token(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token, sort_keys=True).encode()).decode().rstrip("=")


def decode_token(token: str | None) -> Any:
    if token is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        raise InvalidContinuationError("the continuation token is not one this service issued") from None
    if not isinstance(decoded, dict) or not all(isinstance(v, str) for v in decoded.values()):
        raise InvalidContinuationError("the continuation token is not one this service issued")
    return decoded


def _span_of(text: str) -> tuple[int, int]:
    """``"low-high"`` ticks of the creation times a pass saw."""
    low, high = text.split("-")
    return int(low), int(high)


# ---- the job index (jobs table, partition JOBS_PARTITION) and leases --------------------------

SYNC_COLUMNS = [
    "RowKey",
    "JobId",
    "SyncWatermark",
    "SyncNextLink",
    "SyncListingStarted",
    "SyncedAt",
    "SyncFinished",
    "SyncChangedAt",
]


def new_job_row(job_key: str, job_id: str, partitions: int, at: datetime) -> dict[str, Any]:
    return {
        "PartitionKey": JOBS_PARTITION,
        "RowKey": job_key,
        "JobId": job_id,
        "Partitions": partitions,
        "FirstSeenAt": at,
    }


def reshard_begun_row(job_key: str, target: int) -> dict[str, Any]:
    return {"PartitionKey": JOBS_PARTITION, "RowKey": job_key, "ReshardingTo": target}


def reshard_finished_row(job_key: str, target: int) -> dict[str, Any]:
    return {"PartitionKey": JOBS_PARTITION, "RowKey": job_key, "Partitions": target, "ReshardingTo": 0}


def validation_row(
    job_key: str,
    status: str,
    note: str | None,
    validated_at: datetime | None,
    summary: dict | None,
    created_span: tuple[int, int] | None,
) -> dict[str, Any]:
    """A validation outcome, merged into the job's row (fields left out stay as they are)."""
    row: dict[str, Any] = {
        "PartitionKey": JOBS_PARTITION,
        "RowKey": job_key,
        "ValidationStatus": status,
        "ValidationNote": note or "",
    }
    if validated_at is not None:
        row["LastValidatedAt"] = validated_at
    if summary is not None:
        row["LastValidation"] = json.dumps(summary, separators=(",", ":"))
    if created_span is not None:
        row["CreatedSpan"] = f"{ticks_text(created_span[0])}-{ticks_text(created_span[1])}"
    return row


def batch_report_row(job_key: str, report: BatchReported | None) -> dict[str, Any]:
    return {"PartitionKey": JOBS_PARTITION, "RowKey": job_key, "BatchReported": batch_reported_text(report)}


def sync_row(position: SyncPosition, at: datetime) -> dict[str, Any]:
    """A job's sync position, merged into its row, stamped ``at``."""
    row: dict[str, Any] = {
        "PartitionKey": JOBS_PARTITION,
        "RowKey": position.job_key,
        "SyncWatermark": ticks_text(position.watermark_ticks),
        "SyncNextLink": position.next_link or "",
        "SyncListingStarted": ticks_text(position.listing_started_ticks),
        "SyncedAt": at,
        "SyncFinished": position.finished,
    }
    if position.changed_at is not None:
        row["SyncChangedAt"] = position.changed_at
    return row


def sync_position_of(row: Mapping[str, Any]) -> SyncPosition:
    return SyncPosition(
        job_key=row["RowKey"],
        job_id=row["JobId"],
        watermark_ticks=optional_ticks(row.get("SyncWatermark")),
        next_link=row.get("SyncNextLink") or None,
        listing_started_ticks=optional_ticks(row.get("SyncListingStarted")),
        synced_at=row.get("SyncedAt"),
        finished=bool(row.get("SyncFinished")),
        changed_at=row.get("SyncChangedAt"),
    )


def lease_row(name: str, holder: str, expires_at: datetime) -> dict[str, Any]:
    return {"PartitionKey": LEASES_PARTITION, "RowKey": name, "Holder": holder, "ExpiresAt": expires_at}
