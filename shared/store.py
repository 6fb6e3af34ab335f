"""Table Storage: task rows, counter rows, the job index and rejected events.

The one module that talks to azure-data-tables. Layout (README "Storage layout"):

* ``{prefix}tasks``: a job's tasks are spread over ``partitions`` partitions
  ``{jobKey}|{shard:02x}`` (shard = crc32(taskKey) mod partitions, fixed per job when it is
  first seen). Each partition holds its task rows (RowKey = task key) and one counter row
  (RowKey ``!counts``, sorting first) with that partition's counts. A task row and the
  counter row it moves change together in one entity-group transaction under ETag
  conditions: the exactly-once mechanism.
* ``{prefix}jobs``: the job index, one row per job (PartitionKey ``jobs``).
* ``{prefix}rejected``: events that could not be applied, with reason and raw text.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import time
import weakref
import zlib
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterable, Protocol, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.config import Settings
from shared.counting import (
    ZERO, Change, Counts, TaskResult, TaskState, TaskStatus, changes_to_apply, newest_per_task,
)
from shared.errors import ConfigError, InvalidContinuationError, StoreUnavailableError

logger = logging.getLogger(__name__)

# Azurite's well-known development account (public, documented by Microsoft).
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
COUNTER_ROW = "!counts"  # '!' sorts before every character a task key can hold
JOBS_PARTITION = "jobs"
MAX_TRANSACTION_OPERATIONS = 100  # Azure's limit; Azurite answers a 101st with a malformed reply
MAX_FILTER_COMPARISONS = 15  # Azure's limit on discrete comparisons in one query filter
CONFLICT_ATTEMPTS = 10
PARTITIONS_IN_FLIGHT = 8
JOB_CACHE_SECONDS = 60.0  # how long a process trusts that a job's index row still exists
RAW_TEXT_LIMIT = 30_000  # characters kept as plain text; longer raw events are stored compressed
RAW_CHUNK_BYTES = 64_000  # a binary property holds at most 64 KiB
RAW_MAX_BYTES = 900_000  # an entity holds at most 1 MiB

# Fail fast on storage trouble: the webhook answers 503 and Event Grid redelivers later.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 3, "retry_backoff_factor": 0.2, "retry_backoff_max": 2,
    "connection_timeout": 5, "read_timeout": 20,
}
# Transaction failures meaning "what was read is no longer what is stored": re-read, retry.
_CONFLICT_STATUSES = frozenset({404, 409, 412})
_COUNT_FIELDS = ("active", "running", "completed", "succeeded", "failed")


class Observed(Protocol):
    """An observation of one task: a parsed event, or a task seen by validation."""

    job_id: str
    task_id: str
    status: TaskStatus


@dataclass(frozen=True)
class JobRecord:
    job_key: str
    job_id: str  # first-seen case, for display
    partitions: int
    first_seen_at: datetime
    validation_status: str = "unvalidated"
    last_validated_at: datetime | None = None


@dataclass(frozen=True)
class JobCounts:
    job: JobRecord
    tasks: Counts
    slots: Counts
    last_updated_at: datetime | None


@dataclass(frozen=True)
class ApplyOutcome:
    applied: int  # task rows changed
    unchanged: int  # duplicates and observations older than what is stored


def development_connection(connection: str) -> str:
    return DEVELOPMENT_STORAGE if connection.strip().rstrip(";").lower() == "usedevelopmentstorage=true" else connection


def service_client(settings: Settings) -> TableServiceClient:
    if settings.storage_connection:
        try:
            return TableServiceClient.from_connection_string(
                development_connection(settings.storage_connection), **_CLIENT_OPTIONS)
        except ValueError as error:
            raise ConfigError(f"AzureWebJobsStorage is not a usable connection string: {error}") from None
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    credential = (ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
                  if settings.managed_identity_client_id else DefaultAzureCredential())
    return TableServiceClient(endpoint=settings.table_service_uri, credential=credential, **_CLIENT_OPTIONS)


def partition_key(job_key: str, shard: int) -> str:
    return f"{job_key}|{shard:02x}"


def shard_of(task_key: str, partitions: int) -> int:
    return zlib.crc32(task_key.encode()) % partitions


class CountsStore:
    """Per-job task counts with exactly-once effect; see the module docstring for the layout."""

    def __init__(self, service: TableServiceClient, table_prefix: str, job_partitions: int):
        self._service = service
        self._job_partitions = job_partitions
        self.tasks: TableClient = service.get_table_client(f"{table_prefix}tasks")
        self.jobs: TableClient = service.get_table_client(f"{table_prefix}jobs")
        self.rejected: TableClient = service.get_table_client(f"{table_prefix}rejected")
        self._tables_ready = False
        self._known_jobs: dict[str, tuple[int, float]] = {}  # job key -> (partitions, checked at)
        self._partition_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> "CountsStore":
        return cls(service_client(settings), settings.table_prefix, settings.job_partitions)

    async def close(self) -> None:
        for client in (self.tasks, self.jobs, self.rejected, self._service):
            await client.close()

    async def ensure_tables(self) -> None:
        if self._tables_ready:
            return
        async with _storage_call("creating tables"):
            for table in (self.tasks, self.jobs, self.rejected):
                try:
                    await table.create_table()
                except ResourceExistsError:
                    pass
        self._tables_ready = True

    # ---- ingestion -------------------------------------------------------------------------

    async def apply(self, observations: Sequence[Observed]) -> ApplyOutcome:
        """Apply observations exactly once: older or repeated ones change nothing.

        Raises StoreUnavailableError when storage fails or stays contended; retrying the same
        observations later is always safe.
        """
        await self.ensure_tables()
        by_job: dict[str, list[Observed]] = defaultdict(list)
        for observation in observations:
            by_job[observation.job_id.lower()].append(observation)

        partitions: dict[str, list[Observed]] = defaultdict(list)
        for job_key, job_observations in by_job.items():
            count = await self._partitions_for(job_key, job_observations[0].job_id)
            for observation in job_observations:
                task_key = observation.task_id.lower()
                partitions[partition_key(job_key, shard_of(task_key, count))].append(observation)

        in_flight = asyncio.Semaphore(PARTITIONS_IN_FLIGHT)

        async def apply_one(pk: str, items: list[Observed]) -> int:
            async with in_flight:
                return await self._apply_partition(pk, items)

        applied = await asyncio.gather(*(apply_one(pk, items) for pk, items in partitions.items()))
        total = sum(applied)
        return ApplyOutcome(applied=total, unchanged=len(observations) - total)

    async def _apply_partition(self, pk: str, observations: list[Observed]) -> int:
        newest = newest_per_task((o.task_id.lower(), o.status) for o in observations)
        display_ids = {}
        for observation in observations:
            display_ids.setdefault(observation.task_id.lower(), observation.task_id)
        applied: set[str] = set()
        # One writer per partition per process: this process never conflicts with itself.
        async with self._partition_locks[pk]:
            for attempt in range(CONFLICT_ATTEMPTS):
                async with _storage_call("reading task rows"):
                    rows = await self._read_rows(pk, [COUNTER_ROW, *newest])
                counter = rows.pop(COUNTER_ROW, None)
                stored = {key: _status_from_row(row) for key, row in rows.items()}
                changes = changes_to_apply(stored, newest)
                try:
                    await self._commit(pk, changes, rows, counter, display_ids, applied)
                    return len(applied)
                except HttpResponseError as error:
                    if error.status_code not in _CONFLICT_STATUSES:
                        raise _unavailable(error, "writing task rows") from error
                    logger.debug("partition changed under us; re-reading",
                                 extra={"partition": pk, "attempt": attempt})
                except AzureError as error:
                    raise _unavailable(error, "writing task rows") from error
                await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** attempt)))
        raise StoreUnavailableError(f"partition {pk} stayed contended after {CONFLICT_ATTEMPTS} attempts")

    async def _commit(self, pk: str, changes: list[Change], rows: dict[str, dict], counter: dict | None,
                      display_ids: dict[str, str], applied: set[str]) -> None:
        """Write changes in transactions of <= 100 operations, each moving the counter row too."""
        tasks, slots = _counts_from_row(counter)
        counter_etag = counter.metadata["etag"] if counter is not None else None
        per_transaction = MAX_TRANSACTION_OPERATIONS - 1
        for start in range(0, len(changes), per_transaction):
            chunk = changes[start:start + per_transaction]
            operations: list[tuple] = []
            for change in chunk:
                row = _row_from_status(pk, change.task_key, change.new)
                existing = rows.get(change.task_key)
                if existing is None:
                    row["TaskId"] = display_ids[change.task_key]
                    operations.append(("create", row))
                else:
                    row["TaskId"] = existing.get("TaskId", display_ids[change.task_key])
                    operations.append(("update", row, _if_match(existing.metadata["etag"])))
                tasks, slots = tasks + change.task_delta, slots + change.slot_delta
            counter_row = _counter_row(pk, tasks, slots)
            operations.append(("create", counter_row) if counter_etag is None
                              else ("update", counter_row, _if_match(counter_etag)))
            results = await self.tasks.submit_transaction(operations)
            counter_etag = results[-1]["etag"]
            applied.update(change.task_key for change in chunk)

    async def _read_rows(self, pk: str, row_keys: Sequence[str]) -> dict[str, Any]:
        """Point-read many rows of one partition with parameterised OR filters (never pasted ids)."""
        per_query = MAX_FILTER_COMPARISONS - 1  # one comparison is the PartitionKey

        async def read_chunk(keys: Sequence[str]) -> list:
            parameters = {f"k{i}": key for i, key in enumerate(keys)}
            parameters["pk"] = pk
            # Spaces around the parentheses: the SDK's @name substitution splits on whitespace.
            row_filter = " or ".join(f"RowKey eq @k{i}" for i in range(len(keys)))
            return [entity async for entity in self.tasks.query_entities(
                f"PartitionKey eq @pk and ( {row_filter} )", parameters=parameters)]

        key_list = list(row_keys)
        results = await asyncio.gather(*(read_chunk(key_list[i:i + per_query])
                                         for i in range(0, len(key_list), per_query)))
        return {entity["RowKey"]: entity for rows in results for entity in rows}

    async def _partitions_for(self, job_key: str, job_id: str) -> int:
        """The job's partition count, creating its index row on first sight (first-seen case wins)."""
        known = self._known_jobs.get(job_key)
        if known is not None and time.monotonic() - known[1] < JOB_CACHE_SECONDS:
            return known[0]
        async with _storage_call("registering the job"):
            try:
                await self.jobs.create_entity({
                    "PartitionKey": JOBS_PARTITION, "RowKey": job_key, "JobId": job_id,
                    "Partitions": self._job_partitions, "FirstSeenAt": _now(),
                })
                partitions = self._job_partitions
                logger.info("new job registered", extra={"job_id": job_id, "partitions": partitions})
            except ResourceExistsError:
                row = await self.jobs.get_entity(JOBS_PARTITION, job_key)
                partitions = int(row["Partitions"])
        self._known_jobs[job_key] = (partitions, time.monotonic())
        return partitions

    # ---- reads -----------------------------------------------------------------------------

    async def get_job_counts(self, job_key: str) -> JobCounts | None:
        await self.ensure_tables()
        async with _storage_call("reading counts"):
            try:
                job_row = await self.jobs.get_entity(JOBS_PARTITION, job_key)
            except ResourceNotFoundError:
                return None
            job = _job_from_row(job_row)
            return await self._counts_of(job)

    async def list_jobs(self, max_results: int, continuation: str | None) -> tuple[list[JobCounts], str | None]:
        """One page of the job index with each job's counts; the token is opaque to callers."""
        await self.ensure_tables()
        async with _storage_call("listing jobs"):
            pages = self.jobs.query_entities(
                "PartitionKey eq @pk", parameters={"pk": JOBS_PARTITION}, results_per_page=max_results,
            ).by_page(continuation_token=_decode_token(continuation))
            rows: list = []
            async for page in pages:
                rows = [row async for row in page]
                break
            next_token = _encode_token(pages.continuation_token)
            jobs = await asyncio.gather(*(self._counts_of(_job_from_row(row)) for row in rows))
        return list(jobs), next_token

    async def _counts_of(self, job: JobRecord) -> JobCounts:
        async def counter(shard: int):
            try:
                return await self.tasks.get_entity(partition_key(job.job_key, shard), COUNTER_ROW)
            except ResourceNotFoundError:
                return None

        counters = await asyncio.gather(*(counter(shard) for shard in range(job.partitions)))
        tasks, slots, updated = ZERO, ZERO, None
        for row in counters:
            if row is None:
                continue
            row_tasks, row_slots = _counts_from_row(row)
            tasks, slots = tasks + row_tasks, slots + row_slots
            row_updated = row.get("LastUpdatedAt")
            if row_updated is not None and (updated is None or row_updated > updated):
                updated = row_updated
        return JobCounts(job, tasks, slots, updated)

    async def partition_rows(self, job_key: str, shard: int) -> AsyncIterator[dict]:
        """Every row of one of a job's partitions (tests and validation check counters with it)."""
        async for row in self.tasks.query_entities("PartitionKey eq @pk",
                                                   parameters={"pk": partition_key(job_key, shard)}):
            yield row

    # ---- rejected events -------------------------------------------------------------------

    async def keep_rejected(self, rejections: Iterable[Any], received_at: datetime) -> None:
        """Store rejected events idempotently (a redelivery overwrites the same row)."""
        await self.ensure_tables()
        day = received_at.strftime("%Y-%m-%d")
        rows: dict[str, dict] = {}
        for rejection in rejections:
            row_key = hashlib.sha256(rejection.raw.encode()).hexdigest()[:40]
            rows[row_key] = {"PartitionKey": day, "RowKey": row_key, "EventId": rejection.event_id or "",
                             "Reason": rejection.reason, "ReceivedAt": received_at, **_raw_properties(rejection.raw)}
        items = list(rows.values())
        async with _storage_call("keeping rejected events"):
            for start in range(0, len(items), MAX_TRANSACTION_OPERATIONS):
                await self.rejected.submit_transaction(
                    [("upsert", row) for row in items[start:start + MAX_TRANSACTION_OPERATIONS]])

    async def list_rejected(self, day: datetime) -> list[dict]:
        async with _storage_call("reading rejected events"):
            return [row async for row in self.rejected.query_entities(
                "PartitionKey eq @pk", parameters={"pk": day.strftime("%Y-%m-%d")})]


def raw_text_of(row: dict) -> str:
    """The raw event text of a rejected-event row, whether stored plain or compressed."""
    if "Raw" in row:
        return row["Raw"]
    data = b"".join(bytes(row[f"RawDeflate{i}"]) for i in range(int(row["RawChunks"])))
    return zlib.decompress(data).decode()


def _raw_properties(raw: str) -> dict[str, Any]:
    if len(raw) <= RAW_TEXT_LIMIT:
        return {"Raw": raw, "RawLength": len(raw)}
    packed = zlib.compress(raw.encode(), 6)
    truncated = len(packed) > RAW_MAX_BYTES
    if truncated:  # incompressible and huge: keep a readable head rather than fail the delivery
        return {"Raw": raw[:RAW_TEXT_LIMIT], "RawLength": len(raw), "RawTruncated": True}
    parts = [packed[i:i + RAW_CHUNK_BYTES] for i in range(0, len(packed), RAW_CHUNK_BYTES)]
    return {"RawLength": len(raw), "RawChunks": len(parts),
            **{f"RawDeflate{i}": part for i, part in enumerate(parts)}}


def _if_match(etag: str) -> dict[str, Any]:
    return {"mode": "replace", "etag": etag, "match_condition": MatchConditions.IfNotModified}


def _row_from_status(pk: str, task_key: str, status: TaskStatus) -> dict[str, Any]:
    return {
        "PartitionKey": pk, "RowKey": task_key,
        "State": "deleted" if status.state is None else status.state.value,
        "Result": status.result.value if status.result else "",
        "Slots": status.required_slots, "Version": status.version, "UpdatedAt": _now(),
    }


def _status_from_row(row: dict) -> TaskStatus:
    state = None if row["State"] == "deleted" else TaskState(row["State"])
    result = TaskResult(row["Result"]) if row.get("Result") else None
    return TaskStatus(state, result, int(row["Slots"]), row["Version"])


def _counter_row(pk: str, tasks: Counts, slots: Counts) -> dict[str, Any]:
    row: dict[str, Any] = {"PartitionKey": pk, "RowKey": COUNTER_ROW, "LastUpdatedAt": _now()}
    for name in _COUNT_FIELDS:
        row[name.capitalize()] = getattr(tasks, name)
        row[f"{name.capitalize()}Slots"] = getattr(slots, name)
    return row


def _counts_from_row(row: dict | None) -> tuple[Counts, Counts]:
    if row is None:
        return ZERO, ZERO
    tasks = Counts(*(int(row.get(name.capitalize(), 0)) for name in _COUNT_FIELDS))
    slots = Counts(*(int(row.get(f"{name.capitalize()}Slots", 0)) for name in _COUNT_FIELDS))
    return tasks, slots


def _job_from_row(row: dict) -> JobRecord:
    return JobRecord(
        job_key=row["RowKey"], job_id=row["JobId"], partitions=int(row["Partitions"]),
        first_seen_at=row["FirstSeenAt"], validation_status=row.get("ValidationStatus", "unvalidated"),
        last_validated_at=row.get("LastValidatedAt"),
    )


def _encode_token(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token, sort_keys=True).encode()).decode().rstrip("=")


def _decode_token(token: str | None) -> Any:
    if token is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        raise InvalidContinuationError("the continuation token is not one this service issued") from None
    if not isinstance(decoded, dict) or not all(isinstance(v, str) for v in decoded.values()):
        raise InvalidContinuationError("the continuation token is not one this service issued")
    return decoded


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _unavailable(error: AzureError, doing: str) -> StoreUnavailableError:
    status = getattr(error, "status_code", None)
    detail = f"HTTP {status}" if status else type(error).__name__
    return StoreUnavailableError(f"Table Storage failed while {doing} ({detail})")


@asynccontextmanager
async def _storage_call(doing: str):
    """Turn any storage failure into StoreUnavailableError (HTTP 503: try again later)."""
    try:
        yield
    except AzureError as error:
        raise _unavailable(error, doing) from error


_stores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CountsStore]" = weakref.WeakKeyDictionary()


def get_store(settings: Settings) -> CountsStore:
    """The process's store for the running event loop: clients and connections are reused."""
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        store = _stores[loop] = CountsStore.from_settings(settings)
    return store


async def close_store() -> None:
    """Close the running loop's store (host shutdown, end of a test session)."""
    store = _stores.pop(asyncio.get_running_loop(), None)
    if store is not None:
        await store.close()
