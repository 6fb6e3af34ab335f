"""CountsStore: the one object callers use; each table's rows are handled by its own module."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableServiceClient

from shared.accounts import job_key_of
from shared.config import Settings
from shared.counting import TaskStatus
from shared.progress import Episodes, Point
from shared.store.activity import JobActivity
from shared.store.codec.jobs import JOBS_PARTITION, job_of_row
from shared.store.codec.tasks import sum_counters
from shared.store.history import ProgressHistory
from shared.store.jobs import JobIndex, JobSize
from shared.store.partitions import PartitionTables
from shared.store.recent import RecentReads
from shared.store.records import ApplyOutcome, BatchReported, JobCounts, JobRecord, Observed, SyncPosition
from shared.store.rejected import RejectedEvents
from shared.store.resharding import mover
from shared.store.resharding.protocol import ROWS_PER_PARTITION
from shared.store.scans import ScanListings
from shared.store.summaries import JobSummaries
from shared.store.tables import create_table, service_client, storage_call, utc_now
from shared.store.tasks import TaskRows
from shared.store.watches import Watches

logger = logging.getLogger(__name__)


class CountsStore:
    """Per-job task counts with exactly-once effect, the job index, validation listings, rejected
    events, progress history and job summaries: five tables named
    ``{prefix}jobs|scans|rejected|summaries|summaryhours``, 64 of progress history
    (``{prefix}historyNN``, shared.store.history), a table per bucket of job summaries
    (shared.store.summaries), a table per job partition for task and counter rows
    (shared.store.partitions) and one per validation scan for its listing (shared.store.scans)."""

    def __init__(
        self,
        service: TableServiceClient,
        table_prefix: str,
        job_partitions: int,
        rows_per_partition: int = ROWS_PER_PARTITION,
        job_size: JobSize | None = None,
        counts_max_age: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        utc_clock: Callable[[], datetime] = utc_now,
    ):
        """``clock``: monotonic seconds, by which recent reads age; ``utc_clock``: the time changes are
        marked at (``activity``)."""
        self._utc_clock = utc_clock
        self._service = service
        self._recent_readings: RecentReads[tuple[JobCounts | None, list[Point]]] = RecentReads(
            counts_max_age, clock=clock
        )
        self.task_rows = TaskRows(PartitionTables(service, table_prefix))
        self.job_index = JobIndex(
            service.get_table_client(f"{table_prefix}jobs"), job_partitions, rows_per_partition, job_size
        )
        self.rows_per_partition = rows_per_partition
        self.scans = ScanListings(service, table_prefix)
        self.rejected = RejectedEvents(service.get_table_client(f"{table_prefix}rejected"))
        self.history = ProgressHistory(service, table_prefix)
        self.watches = Watches(self.job_index.table, clock)
        self.activity = JobActivity(self.job_index.table)
        self.summaries = JobSummaries(service, table_prefix, clock)
        self._tables = (
            self.job_index.table,
            self.scans.table,
            self.rejected.table,
            self.summaries.table,
            self.summaries.hours_table,
        )
        self._tables_ready = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        job_size: JobSize | None = None,
        clock: Callable[[], float] = time.monotonic,
        utc_clock: Callable[[], datetime] = utc_now,
    ) -> CountsStore:
        """``job_size``: Batch's own count of a job's tasks, to size a job's partitions on first sight."""
        return cls(
            service_client(settings),
            settings.table_prefix,
            settings.job_partitions,
            settings.job_partition_rows,
            job_size,
            settings.counts_max_age_ms / 1000,
            clock,
            utc_clock,
        )

    async def close(self) -> None:
        await self._recent_readings.close()
        for client in (*self._tables, self._service):
            await client.close()

    async def ensure_tables(self) -> None:
        if self._tables_ready:
            return
        async with storage_call("creating tables"):
            for table in self._tables:
                await create_table(table)
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
            by_job[job_key_of(observation.account, observation.job_id)].append(observation)
        await self.activity.mark_changed(by_job, self._utc_clock())  # first: a failed write is sent again
        counts = await asyncio.gather(
            *(
                self.job_index.partitions_for(job_key, job_observations[0].job_id)
                for job_key, job_observations in by_job.items()
            )
        )
        changes = await self.task_rows.apply(
            {
                job_key: (count, job_observations)
                for (job_key, job_observations), count in zip(by_job.items(), counts, strict=True)
            }
        )
        return ApplyOutcome(
            applied=len(changes),
            unchanged=len(observations) - len(changes),
            created=sum(change.old is None for change in changes),
            deleted=sum(change.new.deleted for change in changes),
        )

    # ---- reads -----------------------------------------------------------------------------

    async def get_job(self, job_key: str) -> JobRecord | None:
        """The job's index row alone (no counter rows); None for a job not known here."""
        await self.ensure_tables()
        async with storage_call("reading the job"):
            return await self.job_index.get(job_key)

    async def get_job_counts(self, job_key: str) -> JobCounts | None:
        await self.ensure_tables()
        async with storage_call("reading counts"):
            partitions = self.job_index.cached_partitions(job_key)
            if partitions is None:  # first read of this job here: its row says how many counter rows
                job = await self.job_index.get(job_key)
                if job is None:
                    return None
                self.job_index.remember(job)
                return await self.counts_of(job)
            # Read the job's row and counter rows in one round trip: a partition count that grew since it
            # was cached is found from the counter rows themselves (their reshard marks).
            job_row, counters = await asyncio.gather(
                self.job_index.table.get_entity(JOBS_PARTITION, job_key),
                self.task_rows.job_counters(job_key, partitions),
                return_exceptions=True,
            )
            if isinstance(job_row, ResourceNotFoundError):  # removed since (retention)
                self.job_index.forget(job_key)
                return None
            for outcome in (job_row, counters):
                if isinstance(outcome, BaseException):
                    raise outcome
            job = job_of_row(job_row)
            if job.partitions < partitions:  # removed and registered again with fewer partitions
                self.job_index.remember(job)
                return await self.counts_of(job)
            self.job_index.remember(job)
            return sum_counters(job, *counters)

    async def job_reading(self, job_key: str, window_start: datetime) -> tuple[JobCounts | None, list[Point]]:
        """What a poll of the job's counts is answered from: its counts and its progress points since
        ``window_start``, from a read at most ``COUNTS_MAX_AGE_MS`` old (see shared.store.recent)."""

        async def read() -> tuple[JobCounts | None, list[Point]]:
            job, recent = await asyncio.gather(
                self.get_job_counts(job_key), self.recent_progress(job_key, window_start)
            )
            return job, recent[2]

        return await self._recent_readings.get(job_key, read)

    async def list_jobs(self, max_results: int, continuation: str | None) -> tuple[list[JobCounts], str | None]:
        """One page of the job index with each job's counts; the token is opaque to callers."""
        await self.ensure_tables()
        async with storage_call("listing jobs"):
            jobs, next_token = await self.job_index.page(max_results, continuation)
            counts = await asyncio.gather(*(self.counts_of(job) for job in jobs))
        return list(counts), next_token

    async def all_jobs(self) -> AsyncIterator[JobCounts]:
        token = None
        while True:
            page, token = await self.list_jobs(100, token)
            for job in page:
                yield job
            if token is None:
                return

    async def counts_of(self, job: JobRecord) -> JobCounts:
        """A job's counts read from its counter rows."""
        return sum_counters(job, *await self.task_rows.job_counters(job.job_key, job.partitions))

    def partition_rows(self, job_key: str, shard: int) -> AsyncIterator[dict]:
        return self.task_rows.partition_rows(job_key, shard)

    # ---- validation ------------------------------------------------------------------------

    async def register_job(self, job_id: str, account: str | None = None) -> int:
        """Make sure the job (of ``account``; None: the default one) is in the index (validation may
        meet a job before any event); its partitions."""
        await self.ensure_tables()
        return await self.job_index.partitions_for(job_key_of(account, job_id), job_id)

    async def begin_reshard(self, job_key: str, target: int) -> None:
        """Note on the job's row that its rows move to ``target`` partitions (removal then covers them)."""
        await self.job_index.begin_reshard(job_key, target)

    async def reshard_partition(self, job_key: str, shard: int, target: int) -> int:
        """Move one partition's rows that belong elsewhere under ``target`` partitions; rows moved."""
        return await mover.move_source(self.task_rows.tables, job_key, shard, target)

    async def finish_reshard(self, job_key: str, target: int) -> None:
        await self.job_index.finish_reshard(job_key, target)

    async def mark_validation(
        self,
        job_key: str,
        status: str,
        note: str | None = None,
        validated_at: datetime | None = None,
        summary: dict | None = None,
        created_span: tuple[int, int] | None = None,
    ) -> None:
        await self.activity.mark_changed([job_key], self._utc_clock())
        await self.job_index.mark_validation(job_key, status, note, validated_at, summary, created_span)

    async def record_listing(
        self, job_key: str, scan_id: str, page_id: str, listed: dict[int, list[tuple[str, TaskStatus]]]
    ) -> None:
        await self.ensure_tables()
        await self.scans.record(job_key, scan_id, page_id, listed)

    async def listed_in_shard(self, job_key: str, scan_id: str, shard: int) -> dict[str, tuple[str, TaskStatus]]:
        return await self.scans.in_shard(job_key, scan_id, shard)

    async def drop_scans(self, job_key: str, before: str | None = None, scan_id: str | None = None) -> None:
        await self.ensure_tables()
        await self.scans.drop(job_key, before, scan_id)

    async def reconcile_partition(
        self,
        job_key: str,
        shard: int,
        partitions: int,
        listed: dict[str, tuple[str, TaskStatus]],
        scan_started_ticks: int,
        job_id: str,
    ) -> dict[str, int]:
        await self.activity.mark_changed([job_key], self._utc_clock())
        return await self.task_rows.reconcile_partition(job_key, shard, partitions, listed, scan_started_ticks, job_id)

    async def remove_job(self, job_key: str) -> int:
        """Delete a job's task and counter rows (its partitions' tables), its listings and its index
        row; the partitions removed."""
        await self.ensure_tables()
        async with storage_call("removing a job"):
            job = await self.job_index.get(job_key)
            if job is None:
                return 0
            await self.activity.mark_changed([job_key], self._utc_clock())  # its summary goes too
            removed = max(job.partitions, job.resharding_to or 0)
            await self.task_rows.drop_job(job_key, removed)
            await self.scans.drop(job_key)
            await self.history.delete_job(job_key)
            await self.watches.forget(job_key)
            await self.activity.set_active(job_key, False)
            await self.job_index.delete(job_key)
        logger.info("job removed", extra={"job_id": job.job_id, "partitions": removed})
        return removed

    # ---- delta sync and leases -------------------------------------------------------------

    async def sync_positions(self) -> dict[str, SyncPosition]:
        await self.ensure_tables()
        return await self.job_index.sync_positions()

    async def record_sync(self, position: SyncPosition) -> None:
        await self.job_index.record_sync(position)

    async def record_state_check(self, job_key: str, at: datetime) -> None:
        """A scheduled pass asked Batch for the job's state at ``at``."""
        await self.job_index.record_state_check(job_key, at)

    async def record_batch_report(self, job_key: str, report: BatchReported | None) -> None:
        await self.activity.mark_changed([job_key], self._utc_clock())
        await self.job_index.record_batch_report(job_key, report)

    async def watch(self, job: JobRecord, now: datetime, watch_seconds: float) -> None:
        """Someone is looking at the job: keep it fresh until ``watch_seconds`` from now."""
        await self.watches.mark(job.job_key, now + timedelta(seconds=watch_seconds), watch_seconds)

    async def watched_positions(self, now: datetime) -> list[SyncPosition]:
        """The sync positions of the jobs watched at ``now`` (a job removed since is forgotten)."""
        await self.ensure_tables()
        keys = await self.watches.active(now)
        positions = await asyncio.gather(*(self.job_index.sync_position(key) for key in keys))  # every second
        for job_key, position in zip(keys, positions, strict=True):
            if position is None:
                await self.watches.forget(job_key)
        return [position for position in positions if position is not None]

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        await self.ensure_tables()
        return await self.job_index.acquire_lease(name, holder, seconds)

    async def release_lease(self, name: str, holder: str) -> None:
        await self.job_index.release_lease(name, holder)

    # ---- progress history ------------------------------------------------------------------

    async def recent_progress(self, job_key: str, start: datetime) -> tuple[Episodes, int, list[Point]]:
        """Alerts raised, points held, and the points since ``start`` plus the one in force then."""
        await self.ensure_tables()
        return await self.history.recent(job_key, start)

    async def progress_since(self, job_key: str, start: datetime | None) -> list[Point]:
        await self.ensure_tables()
        return await self.history.since(job_key, start)

    async def move_legacy_history(self, most_rows: int) -> bool:
        """Move about ``most_rows`` rows of an upgraded deployment's progress history into its tables;
        whether all of it is moved (shared.store.history)."""
        return await self.history.move_legacy(most_rows)

    async def record_progress(self, job_key: str, point: Point | None, episodes: Episodes, held: int) -> None:
        await self.history.record(job_key, point, episodes, held)

    async def progress_point_times(self, job_key: str) -> list[datetime]:
        return await self.history.point_times(job_key)

    async def drop_progress_points(self, job_key: str, times: list[datetime]) -> None:
        await self.history.drop_points(job_key, times)

    # ---- rejected events -------------------------------------------------------------------

    async def keep_rejected(self, rejections: Iterable[Any], received_at: datetime) -> None:
        """Store rejected events idempotently (a redelivery overwrites the same row)."""
        await self.ensure_tables()
        await self.rejected.keep(rejections, received_at)

    async def list_rejected(self, day: datetime) -> list[dict]:
        return await self.rejected.of_day(day)
