"""Rejected events (``{prefix}rejected``): what could not be applied, with its reason and raw text,
one partition per day, keyed by a hash of the raw text (a redelivery overwrites the same row)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from azure.data.tables.aio import TableClient

from shared.store.codec import raw_properties
from shared.store.tables import storage_call, upsert_all


class RejectedEvents:
    def __init__(self, table: TableClient):
        self.table = table

    async def keep(self, rejections: Iterable[Any], received_at: datetime) -> None:
        day = received_at.strftime("%Y-%m-%d")
        rows: dict[str, dict] = {}
        for rejection in rejections:
            row_key = hashlib.sha256(rejection.raw.encode()).hexdigest()[:40]
            rows[row_key] = {
                "PartitionKey": day,
                "RowKey": row_key,
                "EventId": rejection.event_id or "",
                "Reason": rejection.reason,
                "ReceivedAt": received_at,
                **raw_properties(rejection.raw),
            }
        async with storage_call("keeping rejected events"):
            await upsert_all(self.table, list(rows.values()))

    async def of_day(self, day: datetime) -> list[dict]:
        async with storage_call("reading rejected events"):
            return [
                row
                async for row in self.table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": day.strftime("%Y-%m-%d")}
                )
            ]
