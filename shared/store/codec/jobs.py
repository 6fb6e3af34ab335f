"""The job index (``{prefix}jobs``, partition ``jobs``): one row per job -- registration, reshard,
validation outcome, Batch's own counts, sync position -- and the leases (partition ``leases``).
Rows written here are merged into the job's row (the fields left out stay as they are)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.errors import InvalidContinuationError
from shared.store.records import BatchReported, JobRecord, SyncPosition

JOBS_PARTITION = "jobs"
LEASES_PARTITION = "leases"
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
        state_checked_at=row.get("StateCheckedAt"),
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


def _span_of(text: str) -> tuple[int, int]:
    """``"low-high"`` ticks of the creation times a pass saw."""
    low, high = text.split("-")
    return int(low), int(high)


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


def state_check_row(job_key: str, at: datetime) -> dict[str, Any]:
    """When a scheduled pass last asked Batch for the job's state (merged into its row)."""
    return {"PartitionKey": JOBS_PARTITION, "RowKey": job_key, "StateCheckedAt": at}


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
