"""The job index (``{prefix}jobs``): one row per job (PartitionKey ``jobs``), which also holds the
job's validation outcome and the delta sync's position; and leases (PartitionKey ``leases``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.accounts import account_of_job_key
from shared.store.codec.jobs import (
    JOBS_PARTITION,
    LEASES_PARTITION,
    SYNC_COLUMNS,
    batch_report_row,
    decode_token,
    encode_token,
    job_of_row,
    lease_row,
    new_job_row,
    reshard_begun_row,
    reshard_finished_row,
    state_check_row,
    sync_position_of,
    sync_row,
    validation_row,
)
from shared.store.queries import first_rows
from shared.store.records import BatchReported, JobRecord, SyncPosition
from shared.store.resharding.protocol import partitions_for
from shared.store.tables import RESENDABLE, etag_of, if_match, storage_call, utc_now

logger = logging.getLogger(__name__)

# Tasks in a job (account, job id) by Batch's own count; None: no such job. Account None: the default one.
JobSize = Callable[[str | None, str], Awaitable["int | None"]]
JOB_CACHE_SECONDS = 60.0  # how long a process trusts that a job's index row still exists


class JobIndex:
    def __init__(
        self, table: TableClient, default_partitions: int, rows_per_partition: int, job_size: JobSize | None = None
    ):
        self.table = table
        self._default_partitions = default_partitions
        self._rows_per_partition = rows_per_partition
        self._job_size = job_size
        self._partition_counts: dict[str, int] = {}  # job key -> partitions (only ever grows)
        self._registered_at: dict[str, float] = {}  # job key -> when its index row was last known to exist
        self._registering: dict[str, asyncio.Future[int]] = {}  # job key -> its registration under way

    def cached_partitions(self, job_key: str) -> int | None:
        return self._partition_counts.get(job_key)

    def remember(self, job: JobRecord) -> None:
        self._partition_counts[job.job_key] = job.partitions

    def forget(self, job_key: str) -> None:
        self._registered_at.pop(job_key, None)
        self._partition_counts.pop(job_key, None)

    async def partitions_for(self, job_key: str, job_id: str) -> int:
        """The job's partition count, creating its index row on first sight (first-seen case wins),
        sized by Batch's own count of its tasks where Batch can be asked. Concurrent deliveries of a
        new job share one registration (one read, one Batch call, one insert), not one each."""
        checked = self._registered_at.get(job_key)
        if checked is not None and time.monotonic() - checked < JOB_CACHE_SECONDS:
            return self._partition_counts[job_key]
        registering = self._registering.get(job_key)
        if registering is None:
            registering = self._registering[job_key] = asyncio.ensure_future(self._register(job_key, job_id))
            registering.add_done_callback(lambda done: self._registration_done(job_key, done))
        return await asyncio.shield(registering)  # a caller cancelled leaves the others' registration running

    def _registration_done(self, job_key: str, done: asyncio.Future[int]) -> None:
        self._registering.pop(job_key, None)
        if not done.cancelled():
            done.exception()  # its waiters raise it; when all were cancelled, it is not left unretrieved

    async def _register(self, job_key: str, job_id: str) -> int:
        async with storage_call("registering the job"):
            job = await self.get(job_key)
            if job is None:
                partitions = await self._partitions_for_new(account_of_job_key(job_key), job_id)
                try:
                    await self.table.create_entity(new_job_row(job_key, job_id, partitions, utc_now()), **RESENDABLE)
                    logger.info("new job registered", extra={"job_id": job_id, "partitions": partitions})
                except ResourceExistsError:  # another instance registered it first
                    job = await self.get(job_key)
            if job is not None:
                partitions = job.partitions
        self._partition_counts[job_key] = partitions
        self._registered_at[job_key] = time.monotonic()
        return partitions

    async def _partitions_for_new(self, account: str | None, job_id: str) -> int:
        if self._job_size is None:
            return self._default_partitions
        try:
            size = await self._job_size(account, job_id)
        except Exception as error:  # Batch unreachable: ingestion goes on; validation resizes the job later
            logger.warning("could not size a new job from Batch: %s", error, extra={"job_id": job_id})
            size = None
        if size is None:
            return self._default_partitions
        return partitions_for(size, self._rows_per_partition, self._default_partitions)

    async def begin_reshard(self, job_key: str, target: int) -> None:
        async with storage_call("starting a reshard"):
            await self.table.update_entity(reshard_begun_row(job_key, target), mode="merge", **RESENDABLE)

    async def finish_reshard(self, job_key: str, target: int) -> None:
        """Every source has moved its rows: ``target`` is the job's partition count from now on."""
        async with storage_call("finishing a reshard"):
            await self.table.update_entity(reshard_finished_row(job_key, target), mode="merge", **RESENDABLE)
        self._partition_counts[job_key] = target

    async def get(self, job_key: str) -> JobRecord | None:
        try:
            return job_of_row(await self.table.get_entity(JOBS_PARTITION, job_key))
        except ResourceNotFoundError:
            return None

    async def page(self, max_results: int, continuation: str | None) -> tuple[list[JobRecord], str | None]:
        """One page of the job index; the token is opaque to callers."""
        pages: Any = self.table.query_entities(  # an AsyncPageIterator: it has continuation_token
            "PartitionKey eq @pk",
            parameters={"pk": JOBS_PARTITION},
            results_per_page=max_results,
        ).by_page(continuation_token=decode_token(continuation))
        rows: list = []
        async for page in pages:
            rows = [row async for row in page]
            break
        return [job_of_row(row) for row in rows], encode_token(pages.continuation_token)

    async def records(self) -> AsyncIterator[JobRecord]:
        """Every job's index row, a query per 1,000 jobs."""
        async with storage_call("reading the job index"):
            async for row in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": JOBS_PARTITION}):
                yield job_of_row(row)

    async def keys_after(self, after: str, limit: int) -> list[str]:
        """Up to ``limit`` job keys after ``after``, in key order."""
        async with storage_call("reading job keys"):
            return [
                row["RowKey"]
                for row in await first_rows(
                    self.table,
                    "PartitionKey eq @pk and RowKey gt @after",
                    {"pk": JOBS_PARTITION, "after": after},
                    ["RowKey"],
                    limit,
                )
            ]

    async def mark_validation(
        self,
        job_key: str,
        status: str,
        note: str | None = None,
        validated_at: datetime | None = None,
        summary: dict | None = None,
        created_span: tuple[int, int] | None = None,
    ) -> None:
        """Record a validation outcome on the job's index row (merge: other fields stay)."""
        row = validation_row(job_key, status, note, validated_at, summary, created_span)
        async with storage_call("recording validation"):
            await self.table.update_entity(row, mode="merge", **RESENDABLE)

    async def record_state_check(self, job_key: str, at: datetime) -> None:
        async with storage_call("recording a state check"):
            await self.table.update_entity(state_check_row(job_key, at), mode="merge", **RESENDABLE)

    async def record_batch_report(self, job_key: str, report: BatchReported | None) -> None:
        """Batch's own counts while they disagree with ours; None clears them (merge: other fields stay)."""
        async with storage_call("recording Batch's own counts"):
            await self.table.update_entity(batch_report_row(job_key, report), mode="merge", **RESENDABLE)

    async def delete(self, job_key: str) -> None:
        await self.table.delete_entity(JOBS_PARTITION, job_key)
        self.forget(job_key)

    # ---- delta sync ------------------------------------------------------------------------

    async def sync_positions(self) -> dict[str, SyncPosition]:
        """Every known job's sync position (one query over the job index)."""
        positions = {}
        async with storage_call("reading sync positions"):
            async for row in self.table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": JOBS_PARTITION}, select=SYNC_COLUMNS
            ):
                positions[row["RowKey"]] = sync_position_of(row)
        return positions

    async def sync_position(self, job_key: str) -> SyncPosition | None:
        """One job's sync position; None for a job not known here."""
        async with storage_call("reading a sync position"):
            try:
                return sync_position_of(await self.table.get_entity(JOBS_PARTITION, job_key, select=SYNC_COLUMNS))
            except ResourceNotFoundError:
                return None

    async def record_sync(self, position: SyncPosition) -> None:
        """Save a job's sync position on its index row, stamped now (merge: other fields stay)."""
        row = sync_row(position, utc_now())
        async with storage_call("recording a sync position"):
            await self.table.update_entity(row, mode="merge", **RESENDABLE)

    # ---- leases ----------------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or extend, for its holder) a named lease; False while another holder has it."""
        current_time = utc_now()
        row = lease_row(name, holder, datetime.fromtimestamp(current_time.timestamp() + seconds, UTC))
        async with storage_call("taking a lease"):
            try:
                await self.table.create_entity(row, **RESENDABLE)
                return True
            except ResourceExistsError:
                current = await self.table.get_entity(LEASES_PARTITION, name)
            if current["Holder"] != holder and current["ExpiresAt"] > current_time:
                return False
            try:
                await self.table.update_entity(row, **if_match(etag_of(current)))
                return True
            except (ResourceModifiedError, ResourceNotFoundError):
                return False  # another holder took it in between

    async def release_lease(self, name: str, holder: str) -> None:
        async with storage_call("releasing a lease"):
            try:
                current = await self.table.get_entity(LEASES_PARTITION, name)
                if current["Holder"] == holder:
                    await self.table.delete_entity(
                        LEASES_PARTITION,
                        name,
                        etag=etag_of(current),
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceNotFoundError, ResourceModifiedError):
                pass  # gone or taken over after expiry: nothing of ours to release
