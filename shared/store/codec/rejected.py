"""Rejected events (``{prefix}rejected``): one partition per day, keyed by a hash of the raw text (a
redelivery overwrites the same row), the raw text kept plain or compressed."""

from __future__ import annotations

import hashlib
import zlib
from datetime import datetime
from typing import Any

from shared.store.codec.binary import binary_parts

RAW_TEXT_LIMIT = 30_000  # characters kept as plain text; longer raw events are stored compressed
RAW_MAX_BYTES = 900_000  # an entity holds at most 1 MiB


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


def day_partition(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def rejected_row(raw: str, event_id: str | None, reason: str, received_at: datetime) -> dict[str, Any]:
    """A rejected event's row: the same raw text received on the same day is the same row."""
    return {
        "PartitionKey": day_partition(received_at),
        "RowKey": hashlib.sha256(raw.encode()).hexdigest()[:40],
        "EventId": event_id or "",
        "Reason": reason,
        "ReceivedAt": received_at,
        **raw_properties(raw),
    }
