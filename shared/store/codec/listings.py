"""Validation's listings: one row per shard of a listed page (partition ``{jobKey}|{scanId}``, RowKey
``{shard:02x}-{pageId}``), and the scan index's row per scan (PartitionKey ``jobKey``, RowKey ``scanId``)."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from shared.counting import RESULT_OF_VALUE, STATE_OF_VALUE, TaskStatus
from shared.store.codec.binary import binary_parts

# A listing row's properties, in order: one shard's part of a page is usually a few KB, but 1,000
# random 64-character ids with random versions compress to ~80 KB, more than one binary property holds.
LISTING_PARTS = ("Listed", *(f"Listed{n}" for n in range(1, 15)))  # a row holds at most 1 MiB


def scan_partition(job_key: str, scan_id: str) -> str:
    return f"{job_key}|{scan_id}"


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


def listing_row(
    job_key: str, scan_id: str, shard: int, page_id: str, entries: Iterable[tuple[str, TaskStatus]]
) -> dict[str, Any]:
    """One shard's part of a listed page (``page_id`` unique in the scan)."""
    return {
        "PartitionKey": scan_partition(job_key, scan_id),
        "RowKey": f"{shard:02x}-{page_id}",
        **listing_properties(entries),
    }


def shard_query(job_key: str, scan_id: str, shard: int) -> tuple[str, dict[str, str]]:
    """The query (and its parameters) reading one shard's rows of a scan's listing, as one range."""
    parameters = {"pk": scan_partition(job_key, scan_id), "low": f"{shard:02x}-", "high": f"{shard:02x}."}
    return "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high", parameters


def listed_of_row(row: Mapping[str, Any]) -> list[tuple[str, TaskStatus]]:
    """The (task id, status) pairs of a listing row read back (binary properties come as base64)."""
    return listing_entries(base64.b64decode(row[name]) for name in LISTING_PARTS if row.get(name))


def scan_index_row(job_key: str, scan_id: str) -> dict[str, Any]:
    return {"PartitionKey": job_key, "RowKey": scan_id}
