"""Validation activities: check every task of a job against Batch's List Tasks and correct the store.

A pass over one job: ``begin`` (size check, creation time, scan id), ``list_pages`` for every List
Tasks page of every creation-time slice (all states, so a task that changes state mid-scan is still
listed exactly once; each page's tasks are kept per shard in the scans table), ``sweep`` per
partition (counter check, then listed-newer corrections and removals through the same ETag-guarded
path as events), ``finish`` (marks the job validated with what was found). The orchestration is
in ``shared.validation.workflow``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.accounts import account_of_job_key
from shared.batch import PAGE_SIZE, BatchReader, creation_filter, get_batch
from shared.config import Settings, get_settings
from shared.errors import MalformedEventError
from shared.events import datetime_to_ticks, read_listing, ticks_of, ticks_to_datetime, ticks_to_iso
from shared.store import CountsStore, get_store, shard_of
from shared.store.reconcile import DRIFT_KINDS
from shared.store.resharding.protocol import reshard_target
from shared.validation.payloads import (
    Action,
    Begin,
    Finish,
    JobRef,
    Move,
    Pages,
    PagesRequest,
    ReshardPlan,
    Scan,
    Span,
    Sweep,
)
from shared.validation.workflow import widened

logger = logging.getLogger(__name__)

VALIDATED, UNVALIDATED = "validated", "unvalidated"
ABANDONED_SCAN_AGE = timedelta(days=1)


class Deps:
    """What an activity works with: the store, each account's Batch (by name; None: the default
    account), settings and the current time."""

    def __init__(
        self, store: CountsStore, batches: Callable[[str | None], BatchReader], settings: Settings, now: datetime
    ):
        self.store, self.batches, self.settings, self.now = store, batches, settings, now

    def batch(self, job_key: str) -> BatchReader:
        """The Batch of the job's own account."""
        return self.batches(account_of_job_key(job_key))


Activity = Callable[[Deps, Any], Awaitable[Any]]


def default_deps() -> Deps:
    settings = get_settings()
    return Deps(get_store(settings), partial(get_batch, settings), settings, datetime.now(UTC))


def activity(work: Activity, deps: Callable[[], Deps] = default_deps) -> Callable[[Any], Awaitable[Any]]:
    """Wire an activity for a function folder: ``main = activity(validation.list_pages)``.

    The returned ``main(payload)`` keeps its own signature on purpose: the Functions worker
    matches parameter names to function.json bindings.
    """

    async def main(payload: Any) -> Any:
        return await work(deps(), payload)

    main.__doc__ = work.__doc__
    return main


async def remove_job(deps: Deps, payload: dict) -> dict:
    job = JobRef.from_json(payload)
    partitions = await deps.store.remove_job(job.job_key)
    logger.info("job cleaned up", extra={"job_id": job.job_id, "reason": job.reason, "partitions": partitions})
    return {"jobId": job.job_id, "action": Action.REMOVED, "reason": job.reason, "partitions": partitions}


async def begin(deps: Deps, payload: dict) -> dict:
    """Check the job's size cheaply (Batch's own counts), grow its partitions if it outgrew them,
    and open a scan."""
    request = Begin.from_json(payload)
    job = request.job
    job_id, job_key = job.job_id, job.job_key
    size = await deps.batch(job_key).job_size(job_id)
    if size is None:
        return await remove_job(deps, job.removed_because("JobNotFound").to_json())
    await deps.store.register_job(job_id, account_of_job_key(job_key))  # validation may meet a job before any event
    known = await deps.store.get_job(job_key)  # read afresh: another process may have resharded it
    if known is not None and request.resharded_to and known.resharding_to == request.resharded_to:
        await deps.store.finish_reshard(job_key, request.resharded_to)
        known = await deps.store.get_job(job_key)
    if known is None:  # removed (a cleanup pass) since it was registered above
        return await remove_job(deps, job.removed_because("removed while the pass began").to_json())
    wanted = reshard_target(size, deps.settings.job_partition_rows, known.partitions, known.resharding_to)
    if wanted is not None:
        await deps.store.begin_reshard(job_key, wanted)
        logger.info(
            "job outgrew its partitions; resharding",
            extra={"job_id": job_id, "tasks": size, "partitions": known.partitions, "target": wanted},
        )
        return ReshardPlan(job, known.partitions, wanted).to_json()
    limit = deps.settings.validation_max_tasks
    if size > limit:
        note = f"{size} tasks is over VALIDATION_MAX_TASKS ({limit}); counts come from events only"
        await deps.store.mark_validation(job_key, UNVALIDATED, note)
        logger.info("job too large to validate", extra={"job_id": job_id, "tasks": size, "limit": limit})
        return {"jobId": job_id, "action": Action.SKIPPED, "reason": note}
    created = await deps.batch(job_key).job_creation_time(job_id)
    if created is None:
        return await remove_job(deps, job.removed_because("JobNotFound").to_json())
    started = datetime_to_ticks(deps.now)
    await deps.store.drop_scans(job_key, before=f"{datetime_to_ticks(deps.now - ABANDONED_SCAN_AGE):019d}")
    scan = Scan(
        job,
        scan_id=f"{started:019d}",
        scan_started_ticks=started,
        created_ticks=ticks_of(created, "the job's creationTime", deps.now),
        partitions=known.partitions,
        expected_tasks=size,
        page_size=PAGE_SIZE,
        parallel_listings=deps.settings.validation_parallel_listings,
        known_span=known.created_span,
    )
    return scan.to_json()


async def reshard(deps: Deps, payload: dict) -> dict:
    """Move the rows of one of a job's partitions that belong to the new ones (ingestion goes on)."""
    move = Move.from_json(payload)
    moved = await deps.store.reshard_partition(move.plan.job.job_key, move.shard, move.plan.target)
    return {"shard": move.shard, "moved": moved}


async def list_pages(deps: Deps, payload: dict) -> dict:
    """Up to ``max_pages`` List Tasks pages of one creation-time slice, in order, each kept per shard
    for the sweeps; returns how many were listed and where the slice's next page starts, or ``split``
    for a dense slice (its first page full) the orchestrator should cut finer, or ``gone`` when Batch
    no longer has the job."""
    request = PagesRequest.from_json(payload)
    scan, piece = request.scan, request.slice
    job_id = scan.job.job_id
    next_link, page_number = piece.next, piece.pages
    listed = invalid = 0
    span: Span = None
    for _ in range(request.max_pages):
        task_filter = None if next_link else creation_filter(piece.low, piece.high)
        try:
            page = await deps.batch(scan.job.job_key).list_page(job_id, next_link, task_filter=task_filter)
        except ResourceNotFoundError:
            return Pages(gone=True).to_json()
        if next_link is None and page.next_link and request.may_split and piece.high - piece.low >= 2:
            return Pages(split=True).to_json()
        by_shard, skipped, created = _by_shard(page.tasks, scan, deps.now)
        span = widened(span, created)
        await deps.store.record_listing(scan.job.job_key, scan.scan_id, f"{piece.low:019d}-{page_number:06d}", by_shard)
        listed, invalid, page_number = listed + len(page.tasks) - skipped, invalid + skipped, page_number + 1
        next_link = page.next_link
        if not next_link:
            break
    return Pages(next_link, page_number - piece.pages, listed, invalid, span).to_json()


def _by_shard(tasks: list[dict], scan: Scan, now: datetime) -> tuple[dict[int, list], int, Span]:
    """A page's tasks per shard as (id, status); how many were skipped as invalid; the first and last
    of their creation ticks."""
    by_shard: dict[int, list] = defaultdict(list)
    created: list[int] = []
    read, invalid = read_listing(tasks, now, scan.job.job_id)
    for raw, task_id, status in read:
        by_shard[shard_of(task_id.lower(), scan.partitions)].append((task_id, status))
        try:  # only guides the next pass's slicing: a task without it is still checked
            created.append(ticks_of(raw.get("creationTime"), "creationTime", now))
        except MalformedEventError:
            pass
    return by_shard, invalid, (min(created), max(created)) if created else None


async def sweep(deps: Deps, payload: dict) -> dict:
    """Reconcile one partition with what the scan listed for it."""
    request = Sweep.from_json(payload)
    scan = request.scan
    listed = await deps.store.listed_in_shard(scan.job.job_key, scan.scan_id, request.shard)
    return await deps.store.reconcile_partition(
        scan.job.job_key, request.shard, scan.partitions, listed, scan.scan_started_ticks, scan.job.job_id
    )


async def finish(deps: Deps, payload: dict) -> dict:
    """Mark the job validated as of the scan's start, with the drift found, and drop the listing."""
    request = Finish.from_json(payload)
    scan = request.scan
    totals = {
        name: sum(sweep_result[name] for sweep_result in request.sweeps)
        for name in ("checked", *DRIFT_KINDS, "countersRepaired", "counterCheckDeferred")
    }
    summary = {
        "scanStartedAt": ticks_to_iso(scan.scan_started_ticks),
        "finishedAt": deps.now.isoformat(),
        "tasksListed": request.tasks_listed,
        "pages": request.pages,
        "corrected": {kind: totals[kind] for kind in DRIFT_KINDS},
        "countersRepaired": totals["countersRepaired"],
        "counterCheckDeferred": totals["counterCheckDeferred"],
    }
    await deps.store.mark_validation(
        scan.job.job_key, VALIDATED, None, ticks_to_datetime(scan.scan_started_ticks), summary, request.created_span
    )  # where the next pass slices
    await deps.store.drop_scans(scan.job.job_key, scan_id=scan.scan_id)
    drift = sum(summary["corrected"].values()) + summary["countersRepaired"]
    log = logger.warning if drift else logger.info
    log(
        "job validated: %d tasks listed, corrected %s, %d counter rows repaired",
        summary["tasksListed"],
        summary["corrected"],
        summary["countersRepaired"],
        extra={"job_id": scan.job.job_id, **summary["corrected"]},
    )
    return {"jobId": scan.job.job_id, "action": Action.VALIDATED, **summary}
