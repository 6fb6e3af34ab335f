"""The azure-data-tables plumbing every table module shares: clients, resends, errors, batches."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.config import Settings
from shared.errors import ConfigError, StoreUnavailableError
from shared.store import transactions

# Azurite's well-known development account (public, documented by Microsoft).
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
MAX_TRANSACTION_OPERATIONS = 100  # Azure's limit; Azurite answers a 101st with a malformed reply
MAX_FILTER_COMPARISONS = 15  # Azure's limit on discrete comparisons in one query filter
MAX_PAGE = 1000  # entities in one query page
RANGE_SLACK = 4  # rows a range read may pass per key asked before it reads key by key
KEYS_PER_QUERY = MAX_FILTER_COMPARISONS - 1  # one comparison is the PartitionKey

# Fail fast on storage trouble: the webhook answers 503 and Event Grid redelivers later.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 2,
    "connection_timeout": 5,
    "read_timeout": 20,
}
# The SDK resends a request whose connection failed only for methods it knows to be idempotent, never
# a POST (entity-group transactions, inserts) or a PATCH (merges): it cannot know whether storage got
# it. Every call given this can be resent: upserts and merges of the same values are idempotent, and
# an insert or ETag-guarded write that storage did get comes back 409/412 on the resend, which the
# caller treats as "re-read" or "already there".
# Transaction failures meaning "what was read is no longer what is stored": re-read, retry.
CONFLICT_STATUSES = frozenset({404, 409, 412})
RESENDABLE: dict[str, Any] = {
    "retry_on_methods": frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "POST", "PATCH"})
}


def hashed_table_name(prefix: str, kind: str, key: str) -> str:
    """``{prefix}{kind}`` and 20 hex digits of a hash of ``key``: a valid Azure table name (letters and
    digits, at most 63 with a prefix of up to 40, a one-letter kind and two more characters) for any key."""
    return f"{prefix}{kind}{hashlib.blake2b(key.encode(), digest_size=10).hexdigest()}"


def development_connection(connection: str) -> str:
    return DEVELOPMENT_STORAGE if connection.strip().rstrip(";").lower() == "usedevelopmentstorage=true" else connection


def service_client(settings: Settings) -> TableServiceClient:
    if settings.storage_connection:
        try:
            return TableServiceClient.from_connection_string(
                development_connection(settings.storage_connection),
                **_CLIENT_OPTIONS,
                use_env_settings=settings.proxy_from_environment,
            )
        except ValueError as error:
            raise ConfigError(f"AzureWebJobsStorage is not a usable connection string: {error}") from None
    if not settings.table_service_uri:  # the settings require a connection string or this
        raise ConfigError("set AzureWebJobsStorage or AzureWebJobsStorage__tableServiceUri")
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    credential = (
        ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
        if settings.managed_identity_client_id
        else DefaultAzureCredential()
    )
    return TableServiceClient(
        endpoint=settings.table_service_uri,
        credential=credential,
        **_CLIENT_OPTIONS,
        use_env_settings=settings.proxy_from_environment,
    )


def row_etag(row: Any) -> str | None:
    """The ETag a row was read with (None for no row)."""
    return None if row is None else etag_of(row)


def utc_now() -> datetime:
    """The time rows are stamped with (the codec takes it as an argument: it stays pure)."""
    return datetime.now(UTC)


def etag_of(entity: Any) -> str:
    """The ETag Table Storage returned with an entity it read (a TableEntity's metadata)."""
    etag = entity.metadata.get("etag")
    if not etag:
        raise ValueError(f"an entity read without an ETag: {entity.get('RowKey')!r}")
    return etag


def if_match(etag: str) -> dict[str, Any]:
    return {"mode": "replace", "etag": etag, "match_condition": MatchConditions.IfNotModified}


def unavailable(error: AzureError, doing: str) -> StoreUnavailableError:
    status = getattr(error, "status_code", None)
    detail = f"HTTP {status}" if status else type(error).__name__
    return StoreUnavailableError(f"Table Storage failed while {doing} ({detail})")


@asynccontextmanager
async def storage_call(doing: str):
    """Turn any storage failure into StoreUnavailableError (HTTP 503: try again later)."""
    try:
        yield
    except AzureError as error:
        raise unavailable(error, doing) from error


async def upsert_all(table: TableClient, rows: list[dict]) -> None:
    """Upsert (insert or replace) rows of one partition in transactions of <= 100 (idempotent: resent
    if cut), sent through the write path's own ``$batch``."""
    for start in range(0, len(rows), MAX_TRANSACTION_OPERATIONS):
        await transactions.submit(
            table, [("upsert", row) for row in rows[start : start + MAX_TRANSACTION_OPERATIONS]], **RESENDABLE
        )


async def delete_rows(table: TableClient, rows: list) -> None:
    """Delete rows (any partitions) in per-partition transactions of <= 100 (not resent: a resent
    delete of a row already gone would fail the whole transaction)."""
    by_partition: dict[str, list] = defaultdict(list)
    for row in rows:
        by_partition[row["PartitionKey"]].append(row)
    for partition_rows in by_partition.values():
        for start in range(0, len(partition_rows), MAX_TRANSACTION_OPERATIONS):
            await table.submit_transaction(
                [
                    ("delete", {"PartitionKey": r["PartitionKey"], "RowKey": r["RowKey"]})
                    for r in partition_rows[start : start + MAX_TRANSACTION_OPERATIONS]
                ]
            )


async def delete_partition(table: TableClient, pk: str) -> int:
    """Delete every row of one partition; rows removed."""
    rows = [
        row
        async for row in table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": pk}, select=["PartitionKey", "RowKey"]
        )
    ]
    await delete_rows(table, rows)
    return len(rows)


async def create_table(table: TableClient) -> None:
    try:
        await table.create_table()
    except ResourceExistsError:
        pass


async def read_rows(table: TableClient, pk: str, row_keys: Sequence[str]) -> dict[str, Any]:
    """Point-read many rows of one partition (never pasted ids: parameterised filters).

    Two keys or more are read as one range query over their span, in pages of at most RANGE_SLACK
    rows per key asked, until the span shows itself sparse (more rows passed than that): the keys
    not yet passed are then read with OR-filtered queries of up to 14 keys, several at a time. A
    range is an index seek, where storage answers an OR filter by scanning the whole partition
    (Azurite: ~10 ms for 8 keys in a 16,000-row partition against ~4 ms for their range), and the
    tasks of one delivery are mostly adjacent (Batch runs a job's tasks roughly in the order added).

    A partition whose table does not exist (yet) has no rows.
    """
    try:
        return await _read_rows(table, pk, sorted(set(row_keys)))
    except ResourceNotFoundError:
        return {}


async def _read_rows(table: TableClient, pk: str, keys: list[str]) -> dict[str, Any]:
    if len(keys) < 2 or not all(key.isascii() for key in keys):  # ASCII: Python's order is storage's
        return await _read_by_or(table, pk, keys)
    wanted, found, scanned, passable = set(keys), {}, 0, RANGE_SLACK * len(keys)
    rows = table.query_entities(
        "PartitionKey eq @pk and RowKey ge @low and RowKey le @high",
        parameters={"pk": pk, "low": keys[0], "high": keys[-1]},
        results_per_page=min(MAX_PAGE, passable),
    )  # a sparse span costs one short page
    async for row in rows:
        if row["RowKey"] in wanted:
            found[row["RowKey"]] = row
        scanned += 1
        if scanned == passable:
            rest = [key for key in keys if key > row["RowKey"]]
            if rest:
                found.update(await _read_by_or(table, pk, rest))
            break
    return found


async def _read_by_or(table: TableClient, pk: str, keys: Sequence[str]) -> dict[str, Any]:
    async def read_chunk(chunk: Sequence[str]) -> list:
        parameters = {f"k{i}": key for i, key in enumerate(chunk)}
        parameters["pk"] = pk
        # Spaces around the parentheses: the SDK's @name substitution splits on whitespace.
        row_filter = " or ".join(f"RowKey eq @k{i}" for i in range(len(chunk)))
        return [
            entity
            async for entity in table.query_entities(f"PartitionKey eq @pk and ( {row_filter} )", parameters=parameters)
        ]

    results = await asyncio.gather(
        *(read_chunk(keys[i : i + KEYS_PER_QUERY]) for i in range(0, len(keys), KEYS_PER_QUERY))
    )
    return {entity["RowKey"]: entity for rows in results for entity in rows}


async def retry_pause(attempt: int) -> None:
    """Jittered, growing pause before re-reading after a conflict (at most 0.5 s)."""
    await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
