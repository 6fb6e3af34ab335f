"""Delta sync: what no log says (tasks added; anything a lost record hid), from List Tasks.

Each run lists, for every job Batch has unfinished and every job here not yet synced since Batch
finished it, only the tasks whose ``stateTransitionTime`` is at or after the job's watermark minus
an overlap (``TASK_SYNC_OVERLAP_SECONDS``, for clock skew and List Tasks' own lag), selecting the
counted fields only, and applies them through the same exactly-once path as events. A job's
watermark becomes the time its listing started once the listing reaches its end.

Which jobs a run reaches (``plan``): a job whose last listing found changes lately every run, a
quiet one every ``IDLE_SYNC_SECONDS``, never-synced ones first, then the longest unsynced; at most
``TASK_SYNC_MAX_JOBS``. Cost per run, bounded: one List Jobs call per 1,000 unfinished jobs; per
job reached, one List Tasks call when nothing changed, at most ``TASK_SYNC_MAX_PAGES`` pages
otherwise (a longer listing resumes next run from its saved next link). Every call goes through the
account's request budget (``shared.batch.RequestBudget``), which paces a long run and which a
refusal pauses as a whole. One run at a time (a lease in the job index); the watched jobs get runs
of their own every second (``run_watched``). A run that still fails after the client's retries
stops early and keeps what it finished.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError

from shared.accounts import account_of_job_key, job_key_of
from shared.batch import BatchReader, BatchUnavailableError, changed_since_filter
from shared.config import Settings
from shared.events import TICKS_PER_SECOND, datetime_to_ticks, read_listing
from shared.store import BatchReported, CountsStore, Observation, SyncPosition
from shared.throttle import Throttle

logger = logging.getLogger(__name__)

LEASE = "task-sync"
WATCHED_LEASE = "watched-sync"
LEASE_SECONDS = 300.0  # renewed after every job; a crashed run frees the lease after this
JOBS_IN_FLIGHT = 8  # enough that the request budget, not the round trips, paces a long run
# A job whose listing found changes this recently is listed every run; a quiet one once this often,
# so the budget goes where tasks move and a job that starts moving is seen within IDLE_SYNC_SECONDS.
ACTIVE_SECONDS = 300.0
IDLE_SYNC_SECONDS = 30.0
HINT_SECONDS = 15.0  # a watched job's counts beside Batch's own: one small call per job this often
BATCH_COUNTS_LAG_SECONDS = 10.0  # Batch's own counts follow a change within about 5 s: twice that, to be sure


@dataclass
class SyncReport:
    run_id: str
    skipped: str | None = None  # why the run did nothing (another run holds the lease)
    jobs_reached: int = 0
    jobs_waiting: int = 0  # candidates left for later runs by TASK_SYNC_MAX_JOBS
    pages: int = 0
    tasks_listed: int = 0
    applied: int = 0
    invalid: int = 0
    resumed_later: list[str] = field(default_factory=list)  # jobs whose listing hit the page budget
    failed: str | None = None

    def to_json(self) -> dict:
        return {
            "runId": self.run_id,
            "skipped": self.skipped,
            "jobsReached": self.jobs_reached,
            "jobsWaiting": self.jobs_waiting,
            "pages": self.pages,
            "tasksListed": self.tasks_listed,
            "applied": self.applied,
            "invalid": self.invalid,
            "resumedLater": self.resumed_later,
            "failed": self.failed,
        }


def listed_since(watermark_ticks: int, overlap_seconds: int) -> int:
    """Where a job's listing starts: its watermark, less the overlap (clock skew, List Tasks lag)."""
    return max(0, watermark_ticks - overlap_seconds * TICKS_PER_SECOND)


def plan(
    unfinished: dict[str, str],
    positions: dict[str, SyncPosition],
    max_jobs: int,
    now: datetime,
    account: str | None = None,
) -> tuple[list[SyncPosition], int]:
    """The jobs of ``account`` (None: the default one) this run reaches, given the account's
    ``positions``, and how many wait. Due: a job never synced, one whose listing is half done, one
    whose last listing found changes within ACTIVE_SECONDS (every run), and any other once
    IDLE_SYNC_SECONDS have passed since its last sync. Never synced first, then the longest since
    their last sync; at most ``max_jobs``."""
    candidates = dict(positions)
    for job_id in unfinished:
        key = job_key_of(account, job_id)
        known = candidates.get(key)
        candidates[key] = replace(known, finished=False) if known else SyncPosition(key, job_id)
    due = [position for position in candidates.values() if not position.finished and _is_due(position, now)]
    due.sort(key=lambda position: (position.synced_at is not None, position.synced_at or 0, position.job_key))
    return due[:max_jobs], max(0, len(due) - max_jobs)


def _is_due(position: SyncPosition, now: datetime) -> bool:
    if position.synced_at is None or position.next_link:
        return True
    if position.changed_at is not None and (now - position.changed_at).total_seconds() < ACTIVE_SECONDS:
        return True
    return (now - position.synced_at).total_seconds() >= IDLE_SYNC_SECONDS


def synced_accounts(settings: Settings) -> list[str | None]:
    """The accounts a sync reaches, as job keys name them (None: the default): those with an endpoint."""
    return [settings.accounts.key_name(account) for account in settings.accounts.accounts if account.url]


Batches = Callable[[str | None], BatchReader]  # an account's Batch reader, by its name in job keys


async def run_every_account(
    store: CountsStore, batches: Batches, settings: Settings, now: datetime
) -> list[SyncReport]:
    """The SyncTasks timer: each account's run at once, each within its own account's budget."""
    return await _each_account(run, store, batches, settings, now)


async def run_watched_every_account(
    store: CountsStore, batches: Batches, settings: Settings, now: datetime
) -> list[SyncReport]:
    """The WatchedSync timer: each account's watched jobs at once."""
    return await _each_account(run_watched, store, batches, settings, now)


async def _each_account(
    one_run: Callable[..., Awaitable[SyncReport]],
    store: CountsStore,
    batches: Batches,
    settings: Settings,
    now: datetime,
) -> list[SyncReport]:
    names = synced_accounts(settings)
    return list(await asyncio.gather(*(one_run(store, batches(name), settings, now, name) for name in names)))


async def run(
    store: CountsStore, batch: BatchReader, settings: Settings, now: datetime, account: str | None = None
) -> SyncReport:
    """One sync run over the jobs of ``account`` (None: the default one), read from its ``batch``."""

    async def choose(report: SyncReport) -> list[tuple[SyncPosition, bool]]:
        unfinished = await batch.unfinished_jobs()
        unfinished_keys = {job_key_of(account, job_id) for job_id in unfinished}
        positions = {
            key: position
            for key, position in (await store.sync_positions()).items()
            if account_of_job_key(key) == account
        }
        jobs, report.jobs_waiting = plan(unfinished, positions, settings.task_sync_max_jobs, now, account)
        return [(position, position.job_key in unfinished_keys) for position in jobs]

    return await _run(store, batch, settings, now, _lease(LEASE, account), choose, "sync run")


def _lease(name: str, account: str | None) -> str:
    """One run at a time per account: the default account's lease keeps its name."""
    return name if account is None else f"{name}-{account}"


async def run_watched(
    store: CountsStore, batch: BatchReader, settings: Settings, now: datetime, account: str | None = None
) -> SyncReport:
    """One run over the watched jobs of ``account`` (every second): what changed in each since its
    watermark, one List Tasks call for a job where nothing did. A job Batch finished or deleted (the
    account's sync marks it) costs nothing more."""
    watched = [
        position
        for position in await store.watched_positions(now)
        if not position.finished and account_of_job_key(position.job_key) == account
    ]
    if not watched:  # the usual second: one small read, no lease
        return SyncReport(run_id=uuid.uuid4().hex)

    async def choose(report: SyncReport) -> list[tuple[SyncPosition, bool]]:
        return [(position, True) for position in watched]

    async def compare(position: SyncPosition) -> None:
        await _compare_with_batch(store, batch, position, now)

    return await _run(store, batch, settings, now, _lease(WATCHED_LEASE, account), choose, "watched sync run", compare)


_comparisons = Throttle()  # per job: Batch's own counts asked for at most every HINT_SECONDS


async def _compare_with_batch(store: CountsStore, batch: BatchReader, position: SyncPosition, now: datetime) -> None:
    """Every HINT_SECONDS per watched job, Batch's own Get Task Counts beside ours, after our sync of it:
    while they differ and ours have been still long enough that Batch's lag cannot explain it, the
    job row keeps Batch's (the API says so once it stands, and validation looks sooner); they never
    replace ours."""
    if not _comparisons.admit(position.job_key, now.timestamp(), HINT_SECONDS):
        return
    reported = await batch.reported_counts(position.job_id)
    ours = await store.get_job_counts(position.job_key)
    if reported is None or ours is None:
        return
    previous = ours.job.batch_reported
    if reported == ours.tasks.as_dict():
        if previous is not None:
            await store.record_batch_report(position.job_key, None)
        return
    if ours.last_updated_at is not None and (now - ours.last_updated_at).total_seconds() < BATCH_COUNTS_LAG_SECONDS:
        return  # Batch's counts trail a change by about 5 s: a job that just moved differs by that alone
    since = previous.since if previous is not None else now
    await store.record_batch_report(position.job_key, BatchReported(reported, now, since))
    if previous is None:
        logger.info(
            "Batch's own counts differ from ours",
            extra={"job_id": position.job_id, "batch": reported, "ours": ours.tasks.as_dict()},
        )


async def _run(
    store: CountsStore,
    batch: BatchReader,
    settings: Settings,
    now: datetime,
    lease: str,
    choose,
    what: str,
    after_job=None,
) -> SyncReport:
    """Sync the jobs ``choose`` picks, at most JOBS_IN_FLIGHT at once, holding ``lease`` (one run at a
    time); ``after_job(position)`` then, if given."""
    report = SyncReport(run_id=uuid.uuid4().hex)
    if not await store.acquire_lease(lease, report.run_id, LEASE_SECONDS):
        report.skipped = f"another {what} holds the lease"
        logger.info("%s skipped: %s", what, report.skipped)
        return report
    try:
        jobs = await choose(report)
        report.jobs_reached = len(jobs)
        gate = asyncio.Semaphore(JOBS_IN_FLIGHT)

        async def reach(position: SyncPosition, unfinished: bool) -> None:
            async with gate:
                if report.failed is None:  # after a Batch failure, leave the rest for the next run
                    await _sync_job(store, batch, settings, position, unfinished, now, report)
                    if after_job is not None and report.failed is None:
                        await after_job(position)
                    await store.acquire_lease(lease, report.run_id, LEASE_SECONDS)

        await asyncio.gather(*(reach(position, unfinished) for position, unfinished in jobs))
    except BatchUnavailableError as error:
        report.failed = str(error)
    finally:
        await store.release_lease(lease, report.run_id)
    log = logger.warning if report.failed else (logger.info if report.applied or report.resumed_later else logger.debug)
    log(
        "%s: %d jobs, %d pages, %d tasks listed, %d applied",
        what,
        report.jobs_reached,
        report.pages,
        report.tasks_listed,
        report.applied,
        extra=report.to_json(),
    )
    return report


async def _sync_job(
    store: CountsStore,
    batch: BatchReader,
    settings: Settings,
    position: SyncPosition,
    unfinished: bool,
    now: datetime,
    report: SyncReport,
) -> None:
    # The watermark is when this job's listing began, not when the run did: in a long run (many jobs,
    # a paced budget) the run's start would fall minutes behind and every later listing re-list them.
    began = max(now, datetime.now(UTC))
    started_ticks = datetime_to_ticks(began)
    if position.next_link:  # resume a listing the page budget cut
        next_link, listing_started = position.next_link, position.listing_started_ticks or started_ticks
        task_filter = None
    else:
        next_link, listing_started = None, started_ticks
        task_filter = (
            None
            if position.watermark_ticks is None
            else changed_since_filter(listed_since(position.watermark_ticks, settings.task_sync_overlap_seconds))
        )
    account = account_of_job_key(position.job_key)
    extra = {"job_id": position.job_id, "account": account}
    listed = 0
    try:
        await store.register_job(position.job_id, account)  # a job with no tasks yet is known, with zero counts
        for _ in range(settings.task_sync_max_pages):
            page = await batch.list_page(position.job_id, next_link, task_filter=task_filter)
            report.pages += 1
            read, invalid = read_listing(page.tasks, now, position.job_id)
            report.invalid += invalid
            observations = [Observation(position.job_id, task_id, status, account) for _, task_id, status in read]
            report.tasks_listed += len(page.tasks)
            listed += len(page.tasks)
            if observations:
                report.applied += (await store.apply(observations)).applied
            next_link = page.next_link
            if not next_link:
                break
    except ResourceNotFoundError:  # gone from Batch: validation removes it; nothing more to sync
        logger.info("sync: job not found in Batch", extra=extra)
        await store.record_sync(replace(position, next_link=None, finished=True))
        return
    except BatchUnavailableError as error:
        report.failed = str(error)
        logger.warning("sync of a job stopped: %s", error, extra=extra)
        return
    if next_link:
        report.resumed_later.append(position.job_id)
        await store.record_sync(
            replace(
                position, next_link=next_link, listing_started_ticks=listing_started, finished=False, changed_at=began
            )
        )
    else:
        await store.record_sync(
            replace(
                position,
                watermark_ticks=listing_started,
                next_link=None,
                listing_started_ticks=None,
                finished=not unfinished,
                changed_at=began if listed else position.changed_at,
            )
        )
