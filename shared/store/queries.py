"""Reads with their replies decoded by hand: a sweep streams every row of a partition, a jobs-list page
reads its first rows.

azure-data-tables turns each returned entity into a ``TableEntity`` through its generated model
deserializer: sampled with py-spy during the 1,000,000-task validation, that was about half of the
pass process's CPU, all of it in the sweeps. Here a page is one ``json.loads``. The request still
goes through the table client's own pipeline (authentication, retries, logging) and a failure
raises as the SDK's query does. Values are as OData's JSON carries them (an Int64 is its decimal
string): rows read here are for reading, not for writing back whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.data.tables._serialize import _parameter_filter_substitution  # the SDK's own @name quoting
from azure.data.tables.aio import TableClient

PAGE_SIZE = 1000  # the most the Table service returns in one page


class Row(dict):
    """An entity's properties, and ``metadata`` with its ETag, as the SDK's ``TableEntity`` has them."""

    def __init__(self, properties: dict[str, Any], etag: str | None):
        super().__init__(properties)
        self.metadata = {"etag": etag}


async def stream_rows(
    table: TableClient, query_filter: str, parameters: dict[str, str], select: Sequence[str]
) -> AsyncIterator[Row]:
    """Every entity ``query_filter`` matches, page after page (``@name`` parameters as the SDK takes them)."""
    query = _query(query_filter, parameters, select, PAGE_SIZE)
    while True:
        rows, more = await _page(table, query)
        for row in rows:
            yield row
        if not more:
            return


async def first_rows(
    table: TableClient, query_filter: str, parameters: dict[str, str], select: Sequence[str], top: int
) -> list[Row]:
    """The first ``top`` entities ``query_filter`` matches, in key order: one request, or more only
    where storage cuts a page short (it may, at its time and partition limits)."""
    rows: list[Row] = []
    query = _query(query_filter, parameters, select, min(PAGE_SIZE, top))
    while len(rows) < top:
        query["$top"] = str(min(PAGE_SIZE, top - len(rows)))
        page, more = await _page(table, query)
        rows += page
        if not more:
            break
    return rows


def _query(query_filter: str, parameters: dict[str, str], select: Sequence[str], top: int) -> dict[str, str]:
    return {
        "$filter": _parameter_filter_substitution(parameters, query_filter),
        "$top": str(top),
        "$select": ",".join(select),
    }


async def _page(table: TableClient, query: dict[str, str]) -> tuple[list[Row], bool]:
    """One page of ``query``'s entities, and whether storage has more (``query`` then continues there)."""
    base = f"{table.scheme}://{table._primary_hostname}/{table.table_name}()"
    headers = {
        "x-ms-version": table.api_version,
        "DataServiceVersion": "3.0",
        "Accept": "application/json;odata=minimalmetadata",
    }
    response = await table._client.send_request(HttpRequest("GET", base, params=query, headers=headers), stream=True)
    await response.read()
    if response.status_code == 404:
        raise ResourceNotFoundError(response=response)
    if response.status_code != 200:
        raise HttpResponseError(response=response)
    rows = []
    for entity in json.loads(response.content)["value"]:
        etag = entity.pop("odata.etag", None)
        rows.append(Row({name: value for name, value in entity.items() if "@odata." not in name}, etag))
    next_partition = response.headers.get("x-ms-continuation-NextPartitionKey")
    if not next_partition:
        return rows, False
    query["NextPartitionKey"] = next_partition
    next_row = response.headers.get("x-ms-continuation-NextRowKey")
    if next_row:
        query["NextRowKey"] = next_row
    else:
        query.pop("NextRowKey", None)
    return rows, True
