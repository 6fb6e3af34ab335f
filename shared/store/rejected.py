"""Rejected events (``{prefix}rejected``): what could not be applied, with its reason and raw text
(its rows: ``shared.store.codec.rejected``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from azure.data.tables.aio import TableClient

from shared.store.codec.rejected import day_partition, rejected_row
from shared.store.tables import storage_call, upsert_all


class RejectedEvents:
    def __init__(self, table: TableClient):
        self.table = table

    async def keep(self, rejections: Iterable[Any], received_at: datetime) -> None:
        rows: dict[str, dict] = {}
        for rejection in rejections:
            row = rejected_row(rejection.raw, rejection.event_id, rejection.reason, received_at)
            rows[row["RowKey"]] = row
        async with storage_call("keeping rejected events"):
            await upsert_all(self.table, list(rows.values()))

    async def of_day(self, day: datetime) -> list[dict]:
        async with storage_call("reading rejected events"):
            return [
                row
                async for row in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": day_partition(day)})
            ]
