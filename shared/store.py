"""Table Storage: task rows, counter rows, the job index and rejected events.

The one module that talks to azure-data-tables. Layout (README "Storage layout"):

* ``{prefix}tasks``: a job's tasks are spread over ``partitions`` partitions
  ``{jobKey}|{shard:02x}`` (shard = crc32(taskKey) mod partitions, fixed per job when it is
  first seen). Each partition holds its task rows (RowKey = task key) and one counter row
  (RowKey ``!counts``, sorting first) with that partition's counts. A task row and the
  counter row it moves change together in one entity-group transaction under ETag
  conditions: the exactly-once mechanism.
* ``{prefix}jobs``: the job index, one row per job (PartitionKey ``jobs``), which also holds the
  delta sync's per-job position; and leases (PartitionKey ``leases``): one run at a time.
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
import zlib
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterable, Protocol, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError, HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError,
)
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.clients import PerLoop
from shared.config import Settings
from shared.counting import (
    ZERO, Change, Counts, TaskResult, TaskState, TaskStatus, changes_to_apply, counts_of, newest_per_task,
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
LEASES_PARTITION = "leases"
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
# The SDK resends a request whose connection failed only for methods it knows to be idempotent, never
# a POST (entity-group transactions, inserts) or a PATCH (merges): it cannot know whether storage got
# it. Every call given this can be resent: upserts and merges of the same values are idempotent, and
# an insert or ETag-guarded write that storage did get comes back 409/412 on the resend, which the
# caller treats as "re-read" or "already there".
RESENDABLE = {"retry_on_methods": frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "POST", "PATCH"})}
# Transaction failures meaning "what was read is no longer what is stored": re-read, retry.
_CONFLICT_STATUSES = frozenset({404, 409, 412})
_COUNT_FIELDS = ("active", "running", "completed", "succeeded", "failed")
_SWEEP_COLUMNS = ["RowKey", "State", "Result", "Slots", "Version",
                  *(f"{name.capitalize()}{suffix}" for name in _COUNT_FIELDS for suffix in ("", "Slots"))]


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
    validation_note: str | None = None  # why a job is unvalidated, e.g. over the task limit
    last_validation: dict | None = None  # what the last pass checked and corrected
    created_span: tuple[int, int] | None = None  # ticks of the first and last task creation the last pass listed


@dataclass(frozen=True)
class SyncPosition:
    """Where the delta sync stands for one job (kept on the job's index row)."""

    job_key: str
    job_id: str
    watermark_ticks: int | None = None  # every change before this was listed; None: never synced
    next_link: str | None = None  # a listing cut by the page budget, resumed next run
    listing_started_ticks: int | None = None  # when that listing began: the watermark once it ends
    synced_at: datetime | None = None
    finished: bool = False  # synced after Batch stopped reporting the job as unfinished


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
    created: int = 0  # of the applied: tasks that had no row yet
    deleted: int = 0  # of the applied: tasks now deleted


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
        self.scans: TableClient = service.get_table_client(f"{table_prefix}scans")
        self._tables_ready = False
        self._partition_counts: dict[str, int] = {}  # job key -> partitions (fixed when a job is first seen)
        self._registered_at: dict[str, float] = {}  # job key -> when its index row was last known to exist
        self._partition_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> "CountsStore":
        return cls(service_client(settings), settings.table_prefix, settings.job_partitions)

    async def close(self) -> None:
        for client in (self.tasks, self.jobs, self.rejected, self.scans, self._service):
            await client.close()

    async def ensure_tables(self) -> None:
        if self._tables_ready:
            return
        async with _storage_call("creating tables"):
            for table in (self.tasks, self.jobs, self.rejected, self.scans):
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

        counts = await asyncio.gather(*(self._partitions_for(job_key, job_observations[0].job_id)
                                        for job_key, job_observations in by_job.items()))
        partitions: dict[str, list[Observed]] = defaultdict(list)
        for (job_key, job_observations), count in zip(by_job.items(), counts):
            for observation in job_observations:
                task_key = observation.task_id.lower()
                partitions[partition_key(job_key, shard_of(task_key, count))].append(observation)

        in_flight = asyncio.Semaphore(PARTITIONS_IN_FLIGHT)

        async def apply_one(pk: str, items: list[Observed]) -> int:
            async with in_flight:
                return await self._apply_partition(pk, items)

        results = await asyncio.gather(*(apply_one(pk, items) for pk, items in partitions.items()))
        changes = [change for applied in results for change in applied]
        return ApplyOutcome(
            applied=len(changes), unchanged=len(observations) - len(changes),
            created=sum(change.old is None for change in changes),
            deleted=sum(change.new.deleted for change in changes),
        )

    async def _apply_partition(self, pk: str, observations: list[Observed]) -> list[Change]:
        newest = newest_per_task((o.task_id.lower(), o.status) for o in observations)
        display_ids = {}
        for observation in observations:
            display_ids.setdefault(observation.task_id.lower(), observation.task_id)
        applied: dict[str, Change] = {}
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
                    return list(applied.values())
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
                      display_ids: dict[str, str], applied: dict[str, Change]) -> None:
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
            results = await self.tasks.submit_transaction(operations, **RESENDABLE)
            counter_etag = results[-1]["etag"]
            applied.update((change.task_key, change) for change in chunk)

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
        checked = self._registered_at.get(job_key)
        if checked is not None and time.monotonic() - checked < JOB_CACHE_SECONDS:
            return self._partition_counts[job_key]
        async with _storage_call("registering the job"):
            try:
                await self.jobs.create_entity({
                    "PartitionKey": JOBS_PARTITION, "RowKey": job_key, "JobId": job_id,
                    "Partitions": self._job_partitions, "FirstSeenAt": _now(),
                }, **RESENDABLE)
                partitions = self._job_partitions
                logger.info("new job registered", extra={"job_id": job_id, "partitions": partitions})
            except ResourceExistsError:
                row = await self.jobs.get_entity(JOBS_PARTITION, job_key)
                partitions = int(row["Partitions"])
        self._partition_counts[job_key] = partitions
        self._registered_at[job_key] = time.monotonic()
        return partitions

    # ---- reads -----------------------------------------------------------------------------

    async def get_job(self, job_key: str) -> JobRecord | None:
        """The job's index row alone (no counter rows); None for a job not known here."""
        await self.ensure_tables()
        async with _storage_call("reading the job"):
            try:
                return _job_from_row(await self.jobs.get_entity(JOBS_PARTITION, job_key))
            except ResourceNotFoundError:
                return None

    async def get_job_counts(self, job_key: str) -> JobCounts | None:
        await self.ensure_tables()
        async with _storage_call("reading counts"):
            partitions = self._partition_counts.get(job_key)
            if partitions is None:  # first read of this job here: its row says how many counter rows
                job = await self.get_job(job_key)
                if job is None:
                    return None
                self._partition_counts[job_key] = job.partitions
                return await self._counts_of(job)
            # A job's partition count never changes: read its row and counter rows in one round trip.
            job_row, counters = await asyncio.gather(self.jobs.get_entity(JOBS_PARTITION, job_key),
                                                     self._counter_rows(job_key, partitions),
                                                     return_exceptions=True)
            if isinstance(job_row, ResourceNotFoundError):  # removed since (retention)
                self._partition_counts.pop(job_key, None)
                return None
            for outcome in (job_row, counters):
                if isinstance(outcome, BaseException):
                    raise outcome
            job = _job_from_row(job_row)
            if job.partitions != partitions:  # removed and registered again with another setting
                self._partition_counts[job_key] = job.partitions
                return await self._counts_of(job)
            return _sum_counters(job, counters)

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
        return _sum_counters(job, await self._counter_rows(job.job_key, job.partitions))

    async def _counter_rows(self, job_key: str, partitions: int) -> list:
        async def counter(shard: int):
            try:
                return await self.tasks.get_entity(partition_key(job_key, shard), COUNTER_ROW)
            except ResourceNotFoundError:
                return None

        return list(await asyncio.gather(*(counter(shard) for shard in range(partitions))))

    async def partition_rows(self, job_key: str, shard: int) -> AsyncIterator[dict]:
        """Every row of one of a job's partitions, as stored (tests check counter rows with it)."""
        async for row in self.tasks.query_entities("PartitionKey eq @pk",
                                                   parameters={"pk": partition_key(job_key, shard)}):
            yield row

    # ---- validation ------------------------------------------------------------------------

    async def register_job(self, job_id: str) -> int:
        """Make sure the job is in the index (validation may meet a job before any event); partitions."""
        await self.ensure_tables()
        return await self._partitions_for(job_id.lower(), job_id)

    async def all_jobs(self) -> AsyncIterator[JobCounts]:
        token = None
        while True:
            page, token = await self.list_jobs(100, token)
            for job in page:
                yield job
            if token is None:
                return

    async def mark_validation(self, job_key: str, status: str, note: str | None = None,
                              validated_at: datetime | None = None, summary: dict | None = None,
                              created_span: tuple[int, int] | None = None) -> None:
        """Record a validation outcome on the job's index row (merge: other fields stay)."""
        row: dict[str, Any] = {"PartitionKey": JOBS_PARTITION, "RowKey": job_key,
                               "ValidationStatus": status, "ValidationNote": note or ""}
        if validated_at is not None:
            row["LastValidatedAt"] = validated_at
        if summary is not None:
            row["LastValidation"] = json.dumps(summary, separators=(",", ":"))
        if created_span is not None:
            row["CreatedSpan"] = f"{_ticks_text(created_span[0])}-{_ticks_text(created_span[1])}"
        async with _storage_call("recording validation"):
            await self.jobs.update_entity(row, mode="merge", **RESENDABLE)

    async def record_listing(self, job_key: str, scan_id: str, page_id: str,
                             listed: dict[int, list[tuple[str, str, TaskStatus]]]) -> None:
        """Keep what one List Tasks page (``page_id``, unique in the scan) showed, per shard, for that
        shard's sweep (idempotent)."""
        await self.ensure_tables()
        rows = [{"PartitionKey": _scan_partition(job_key, scan_id), "RowKey": f"{shard:02x}-{page_id}",
                 "Listed": zlib.compress(json.dumps([[key, task_id, _status_to_list(status)]
                                                     for key, task_id, status in entries],
                                                    separators=(",", ":")).encode())}
                for shard, entries in sorted(listed.items())]
        async with _storage_call("recording a listing page"):
            await _upsert_all(self.scans, rows)

    async def listed_in_shard(self, job_key: str, scan_id: str, shard: int) -> dict[str, tuple[str, TaskStatus]]:
        """Everything the scan listed for one shard: task key -> (task id, status)."""
        listed: dict[str, tuple[str, TaskStatus]] = {}
        async with _storage_call("reading a listing"):
            async for row in self.scans.query_entities(
                    "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                    parameters={"pk": _scan_partition(job_key, scan_id), "low": f"{shard:02x}-",
                                "high": f"{shard:02x}."}):
                for key, task_id, status in json.loads(zlib.decompress(bytes(row["Listed"]))):
                    listed[key] = (task_id, _status_from_list(status))
        return listed

    async def drop_scans(self, job_key: str, before: str | None = None, scan_id: str | None = None) -> None:
        """Remove listing rows of a job: one scan's, those of scans older than ``before``, or all."""
        await self.ensure_tables()
        low, high = f"{job_key}|", f"{job_key}}}"
        if scan_id is not None:
            low, high = _scan_partition(job_key, scan_id), _scan_partition(job_key, scan_id) + "\x00"
        elif before is not None:
            high = _scan_partition(job_key, before)
        async with _storage_call("removing listings"):
            rows = [row async for row in self.scans.query_entities(
                "PartitionKey ge @low and PartitionKey lt @high",
                parameters={"low": low, "high": high}, select=["PartitionKey", "RowKey"])]
            await self._delete_rows(self.scans, rows)

    async def reconcile_partition(self, job_key: str, shard: int, listed: dict[str, tuple[str, TaskStatus]],
                                  scan_started_ticks: int, job_id: str) -> dict[str, int]:
        """Correct one partition from a listing; newer stored rows (events that overtook the scan) stay.

        1. Read the partition; if the counter row disagrees with the sum of its task rows and no
           write landed while reading (the counter's ETag is unchanged), repair the counter.
        2. Listed tasks newer than stored, and stored tasks absent from the listing whose version
           predates the scan (they were deleted), go through the same ETag-guarded path as events.
        """
        pk = partition_key(job_key, shard)
        stored, counter_fixed = await self._check_counter(pk)
        # Only what differs from the stream goes to the write path, which re-reads those rows and
        # decides again under ETags: a task that changed since the stream is judged on its new row.
        observations: list[Observed] = [
            Observation(job_id, task_id, status) for key, (task_id, status) in listed.items()
            if key not in stored or status.version > stored[key][0]
        ]
        removed = TaskStatus.observed(scan_started_ticks, 0, None, None, 1)
        for key, (version, deleted) in stored.items():
            if key not in listed and not deleted and version < removed.version:
                observations.append(Observation(job_id, key, removed))
        changes = await self._apply_partition(pk, observations) if observations else []
        return {
            "checked": len(listed),
            "missing": sum(change.old is None and not change.new.deleted for change in changes),
            "stale": sum(change.old is not None and not change.new.deleted for change in changes),
            "removed": sum(change.new.deleted for change in changes),
            "countersRepaired": int(counter_fixed is True),
            "counterCheckDeferred": int(counter_fixed is None),
        }

    async def _check_counter(self, pk: str) -> tuple[dict[str, tuple[str, bool]], bool | None]:
        """Stream a partition; repair its counter row if it disagrees with the task rows.

        Returns each task row's (version, deleted) -- all a sweep needs to compare with a listing;
        rows are not kept, so memory stays small for large partitions -- and True (repaired),
        False (it was right) or None (writes kept landing while reading, so there was no
        consistent snapshot: the check is deferred to a later pass).
        """
        for _ in range(3):
            async with _storage_call("checking a counter row"):
                counter, versions, tasks, slots = None, {}, ZERO, ZERO
                async for row in self.tasks.query_entities("PartitionKey eq @pk", parameters={"pk": pk},
                                                           select=_SWEEP_COLUMNS):
                    if row["RowKey"] == COUNTER_ROW:
                        counter = row
                        continue
                    status = _status_from_row(row)
                    tasks, slots = tasks + status.task_counts(), slots + status.slot_counts()
                    versions[row["RowKey"]] = (status.version, status.deleted)
                if _counts_from_row(counter) == (tasks, slots):
                    return versions, False
                # The counter row sorts first, so it was read before every task row, and every
                # write to a partition moves it: if its ETag still holds, the rows read are one
                # consistent snapshot and the conditional write below proves it.
                try:
                    async with self._partition_locks[pk]:
                        row = _counter_row(pk, tasks, slots)
                        if counter is None:
                            await self.tasks.create_entity(row, **RESENDABLE)
                        else:
                            await self.tasks.update_entity(row, **_if_match(counter.metadata["etag"]))
                    logger.warning("counter row repaired", extra={
                        "partition": pk, "was": str(_counts_from_row(counter)[0]), "now": str(tasks)})
                    return versions, True
                except (ResourceModifiedError, ResourceExistsError):
                    continue
        return versions, None

    async def remove_job(self, job_key: str) -> int:
        """Delete a job's task and counter rows, its listings and its index row; rows removed."""
        await self.ensure_tables()
        async with _storage_call("removing a job"):
            try:
                job = _job_from_row(await self.jobs.get_entity(JOBS_PARTITION, job_key))
            except ResourceNotFoundError:
                return 0
            removed = 0
            for shard in range(job.partitions):
                rows = [row async for row in self.tasks.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": partition_key(job_key, shard)},
                    select=["PartitionKey", "RowKey"])]
                await self._delete_rows(self.tasks, rows)
                removed += len(rows)
            await self.drop_scans(job_key)
            await self.jobs.delete_entity(JOBS_PARTITION, job_key)
        self._registered_at.pop(job_key, None)
        self._partition_counts.pop(job_key, None)
        logger.info("job removed", extra={"job_id": job.job_id, "rows": removed})
        return removed

    async def _delete_rows(self, table: TableClient, rows: list) -> None:
        by_partition: dict[str, list] = defaultdict(list)
        for row in rows:
            by_partition[row["PartitionKey"]].append(row)
        for partition_rows in by_partition.values():
            for start in range(0, len(partition_rows), MAX_TRANSACTION_OPERATIONS):
                await table.submit_transaction([("delete", {"PartitionKey": r["PartitionKey"], "RowKey": r["RowKey"]})
                                                for r in partition_rows[start:start + MAX_TRANSACTION_OPERATIONS]])

    # ---- delta sync ------------------------------------------------------------------------

    async def sync_positions(self) -> dict[str, SyncPosition]:
        """Every known job's sync position (one query over the job index)."""
        await self.ensure_tables()
        positions = {}
        async with _storage_call("reading sync positions"):
            async for row in self.jobs.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": JOBS_PARTITION},
                    select=["RowKey", "JobId", "SyncWatermark", "SyncNextLink", "SyncListingStarted", "SyncedAt",
                            "SyncFinished"]):
                positions[row["RowKey"]] = SyncPosition(
                    job_key=row["RowKey"], job_id=row["JobId"], watermark_ticks=_optional_ticks(row.get("SyncWatermark")),
                    next_link=row.get("SyncNextLink") or None,
                    listing_started_ticks=_optional_ticks(row.get("SyncListingStarted")),
                    synced_at=row.get("SyncedAt"), finished=bool(row.get("SyncFinished")))
        return positions

    async def record_sync(self, position: SyncPosition) -> None:
        """Save a job's sync position on its index row, stamped now (merge: other fields stay)."""
        row = {"PartitionKey": JOBS_PARTITION, "RowKey": position.job_key,
               "SyncWatermark": _ticks_text(position.watermark_ticks), "SyncNextLink": position.next_link or "",
               "SyncListingStarted": _ticks_text(position.listing_started_ticks),
               "SyncedAt": _now(), "SyncFinished": position.finished}
        async with _storage_call("recording a sync position"):
            await self.jobs.update_entity(row, mode="merge", **RESENDABLE)

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or extend, for its holder) a named lease; False while another holder has it."""
        await self.ensure_tables()
        now = _now()
        row = {"PartitionKey": LEASES_PARTITION, "RowKey": name, "Holder": holder,
               "ExpiresAt": datetime.fromtimestamp(now.timestamp() + seconds, timezone.utc)}
        async with _storage_call("taking a lease"):
            try:
                await self.jobs.create_entity(row, **RESENDABLE)
                return True
            except ResourceExistsError:
                current = await self.jobs.get_entity(LEASES_PARTITION, name)
            if current["Holder"] != holder and current["ExpiresAt"] > now:
                return False
            try:
                await self.jobs.update_entity(row, **_if_match(current.metadata["etag"]))
                return True
            except (ResourceModifiedError, ResourceNotFoundError):
                return False  # another holder took it in between

    async def release_lease(self, name: str, holder: str) -> None:
        async with _storage_call("releasing a lease"):
            try:
                current = await self.jobs.get_entity(LEASES_PARTITION, name)
                if current["Holder"] == holder:
                    await self.jobs.delete_entity(LEASES_PARTITION, name, etag=current.metadata["etag"],
                                                  match_condition=MatchConditions.IfNotModified)
            except (ResourceNotFoundError, ResourceModifiedError):
                pass  # gone or taken over after expiry: nothing of ours to release

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
            await _upsert_all(self.rejected, items)

    async def list_rejected(self, day: datetime) -> list[dict]:
        async with _storage_call("reading rejected events"):
            return [row async for row in self.rejected.query_entities(
                "PartitionKey eq @pk", parameters={"pk": day.strftime("%Y-%m-%d")})]


def _sum_counters(job: JobRecord, counters: list) -> JobCounts:
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


@dataclass(frozen=True)
class Observation:
    """A task seen outside an event, e.g. in a listing (satisfies Observed)."""

    job_id: str
    task_id: str
    status: TaskStatus


def _scan_partition(job_key: str, scan_id: str) -> str:
    return f"{job_key}|{scan_id}"


def _status_to_list(status: TaskStatus) -> list:
    return [status.state.value if status.state else None, status.result.value if status.result else None,
            status.required_slots, status.version]


def _status_from_list(values: list) -> TaskStatus:
    state, result, slots, version = values
    return TaskStatus(TaskState(state) if state else None, TaskResult(result) if result else None, slots, version)


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
    # `or 0`: a property missing from an entity may come back as null under $select
    tasks = Counts(*(int(row.get(name.capitalize()) or 0) for name in _COUNT_FIELDS))
    slots = Counts(*(int(row.get(f"{name.capitalize()}Slots") or 0) for name in _COUNT_FIELDS))
    return tasks, slots


def _job_from_row(row: dict) -> JobRecord:
    return JobRecord(
        job_key=row["RowKey"], job_id=row["JobId"], partitions=int(row["Partitions"]),
        first_seen_at=row["FirstSeenAt"], validation_status=row.get("ValidationStatus", "unvalidated"),
        last_validated_at=row.get("LastValidatedAt"), validation_note=row.get("ValidationNote") or None,
        last_validation=json.loads(row["LastValidation"]) if row.get("LastValidation") else None,
        created_span=tuple(int(part) for part in row["CreatedSpan"].split("-")) if row.get("CreatedSpan") else None,
    )


def _ticks_text(ticks: int | None) -> str:
    return "" if ticks is None else f"{ticks:019d}"  # text: sorts like the number, any size


def _optional_ticks(text: str | None) -> int | None:
    return int(text) if text else None


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


async def _upsert_all(table: TableClient, rows: list[dict]) -> None:
    """Upsert rows of one partition in transactions of <= 100 (idempotent: resent if cut)."""
    for start in range(0, len(rows), MAX_TRANSACTION_OPERATIONS):
        await table.submit_transaction([("upsert", row) for row in rows[start:start + MAX_TRANSACTION_OPERATIONS]],
                                       **RESENDABLE)


_stores: PerLoop[CountsStore] = PerLoop()


def get_store(settings: Settings) -> CountsStore:
    """The process's store for the running event loop: clients and connections are reused."""
    return _stores.get(lambda: CountsStore.from_settings(settings))


async def close_store() -> None:
    """Close the running loop's store (host shutdown, end of a test session)."""
    await _stores.close()
