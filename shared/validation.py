"""Validation activities: check every task of a job against Batch's List Tasks and correct the store.

A pass over one job: ``begin`` (size check, creation time, scan id), ``list_pages`` for every List
Tasks page of every creation-time slice (all states, so a task that changes state mid-scan is still
listed exactly once; each page's tasks are kept per shard in the scans table), ``sweep`` per
partition (counter check, then listed-newer corrections and removals through the same ETag-guarded
path as events), ``finish`` (marks the job validated with what was found). The orchestration is in ``shared.workflow``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared import workflow
from shared.batch import PAGE_SIZE, BatchReader, creation_filter, get_batch
from shared.config import Settings, get_settings
from shared.errors import InvalidEventError
from shared.events import datetime_to_ticks, task_status, ticks_of, ticks_to_datetime, ticks_to_iso
from shared.replies import Reply, error, ok
from shared.store import CountsStore, JobCounts, get_store, shard_of
from shared.store.layout import partitions_for
from shared.store.reconcile import DRIFT_KINDS

logger = logging.getLogger(__name__)

VALIDATED, UNVALIDATED = "validated", "unvalidated"
ABANDONED_SCAN_AGE = timedelta(days=1)


class Deps:
    """What an activity works with: the store, Batch, settings and the current time."""

    def __init__(self, store: CountsStore, batch: BatchReader, settings: Settings, now: datetime):
        self.store, self.batch, self.settings, self.now = store, batch, settings, now


Activity = Callable[[Deps, Any], Awaitable[Any]]


def default_deps() -> Deps:
    settings = get_settings()
    return Deps(get_store(settings), get_batch(settings), settings, datetime.now(UTC))


def activity(work: Activity, deps: Callable[[], Deps] = default_deps) -> Callable[[Any], Awaitable[Any]]:
    """Wire an activity for a function folder: ``main = activity(validation.list_pages)``.

    The returned ``main(payload)`` keeps its own signature on purpose: the Functions worker
    matches parameter names to function.json bindings.
    """

    async def main(payload: Any) -> Any:
        return await work(deps(), payload)

    main.__doc__ = work.__doc__
    return main


TASKS_PER_MINUTE_APART = 10_000  # the cost rule: a job's passes are at least 1 minute per 10,000 of its tasks apart


def due(job: JobCounts, now: datetime) -> bool:
    """Whether a job should be validated now: never validated; Batch's own counts disagreeing with
    ours for a while since its last pass; or changed since its last pass and that pass is old enough
    for its size (the cost rule: one minute per 10,000 tasks, so a pass costs each
    job on average at most ~10 List Tasks calls a minute -- a 200,000-task job every 20 minutes, a
    1,000,000-task job every 100 -- while small jobs are validated on every schedule tick)."""
    validated_at = job.job.last_validated_at
    if validated_at is None:
        return True
    report = job.job.batch_reported
    if report is not None and report.standing(now) and report.since > validated_at:
        return True  # Batch's own counts have disagreed with ours since the last pass: look now
    if not changed_since_validated(job):
        return False
    tasks = job.tasks.active + job.tasks.running + job.tasks.completed
    return now - validated_at >= timedelta(minutes=tasks / TASKS_PER_MINUTE_APART)


def changed_since_validated(job: JobCounts) -> bool:
    validated_at = job.job.last_validated_at
    return validated_at is not None and job.last_updated_at is not None and job.last_updated_at > validated_at


async def select_jobs(deps: Deps) -> dict:
    """Jobs to validate (``due``) and jobs to remove (gone from Batch, or completed and validated
    longer ago than the retention)."""
    validate, remove = [], []
    retention = timedelta(days=deps.settings.retention_days)
    async for job in deps.store.all_jobs():
        ref = {"jobKey": job.job.job_key, "jobId": job.job.job_id}
        if due(job, deps.now):
            validate.append(ref)
            continue
        if changed_since_validated(job):
            continue  # changed, but validated too recently for its size
        validated_at = job.job.last_validated_at
        state = await deps.batch.job_state(job.job.job_id)
        if state is None:
            remove.append({**ref, "reason": "JobNotFound"})
        elif state == "completed" and validated_at is not None and deps.now - validated_at > retention:
            remove.append({**ref, "reason": f"completed and validated over {deps.settings.retention_days} days ago"})
    logger.info("validation planned", extra={"validate": len(validate), "remove": len(remove)})
    return {"validate": validate, "remove": remove}


async def schedule(client: Any, deps: Deps) -> dict:
    """The scheduled pass: start each due job's validation as its own orchestration (the id on-demand
    validation uses, so one job never has two at once, and a long pass over a huge job delays no
    other job), unless it is still running; hand removals to one clean-up orchestration."""
    plan = await select_jobs(deps)
    started = [
        job["jobId"]
        for job in plan["validate"]
        if await start_unless_running(client, workflow.VALIDATE_JOB, workflow.on_demand_instance_id(job["jobKey"]), job)
    ]
    removing = bool(plan["remove"]) and await start_unless_running(
        client, workflow.REMOVE_JOBS, workflow.REMOVAL_INSTANCE_ID, plan["remove"]
    )
    return {
        "started": started,
        "stillRunning": len(plan["validate"]) - len(started),
        "removing": [job["jobId"] for job in plan["remove"]] if removing else [],
    }


async def remove_job(deps: Deps, job: dict) -> dict:
    partitions = await deps.store.remove_job(job["jobKey"])
    logger.info("job cleaned up", extra={"job_id": job["jobId"], "reason": job.get("reason"), "partitions": partitions})
    return {
        "jobId": job["jobId"],
        "action": workflow.Action.REMOVED,
        "reason": job.get("reason"),
        "partitions": partitions,
    }


async def begin(deps: Deps, job: dict) -> dict:
    """Check the job's size cheaply (Batch's own counts), grow its partitions if it outgrew them,
    and open a scan."""
    job_id, job_key = job["jobId"], job["jobKey"]
    size = await deps.batch.job_size(job_id)
    if size is None:
        return await remove_job(deps, {**job, "reason": "JobNotFound"})
    await deps.store.register_job(job_id)  # validation may meet a job before any event
    known = await deps.store.get_job(job_key)  # read afresh: another process may have resharded it
    if known is not None and job.get("reshardedTo") and known.resharding_to == job["reshardedTo"]:
        await deps.store.finish_reshard(job_key, job["reshardedTo"])
        known = await deps.store.get_job(job_key)
    if known is None:  # removed (a cleanup pass) since it was registered above
        return await remove_job(deps, {**job, "reason": "removed while the pass began"})
    # A reshard left unfinished (a failed pass) is finished as it began: its sources are sealed for it.
    wanted = known.resharding_to or partitions_for(size, deps.settings.job_partition_rows, known.partitions)
    if wanted > known.partitions:
        await deps.store.begin_reshard(job_key, wanted)
        logger.info(
            "job outgrew its partitions; resharding",
            extra={"job_id": job_id, "tasks": size, "partitions": known.partitions, "target": wanted},
        )
        return {
            "jobId": job_id,
            "jobKey": job_key,
            "action": workflow.Action.RESHARD,
            "partitions": known.partitions,
            "target": wanted,
        }
    limit = deps.settings.validation_max_tasks
    if size > limit:
        note = f"{size} tasks is over VALIDATION_MAX_TASKS ({limit}); counts come from events only"
        await deps.store.mark_validation(job_key, UNVALIDATED, note)
        logger.info("job too large to validate", extra={"job_id": job_id, "tasks": size, "limit": limit})
        return {"jobId": job_id, "action": workflow.Action.SKIPPED, "reason": note}
    created = await deps.batch.job_creation_time(job_id)
    if created is None:
        return await remove_job(deps, {**job, "reason": "JobNotFound"})
    started = datetime_to_ticks(deps.now)
    await deps.store.drop_scans(job_key, before=f"{datetime_to_ticks(deps.now - ABANDONED_SCAN_AGE):019d}")
    return {
        "jobId": job_id,
        "jobKey": job_key,
        "action": workflow.Action.VALIDATE,
        "scanId": f"{started:019d}",
        "scanStartedTicks": started,
        "createdTicks": ticks_of(created, "the job's creationTime", deps.now),
        "partitions": known.partitions,
        "expectedTasks": size,
        "pageSize": PAGE_SIZE,  # in the input: the orchestrator imports nothing of Batch's SDK
        "knownSpan": known.created_span,
        "parallelListings": deps.settings.validation_parallel_listings,
    }


async def reshard(deps: Deps, move: dict) -> dict:
    """Move the rows of one of a job's partitions that belong to the new ones (ingestion goes on)."""
    moved = await deps.store.reshard_partition(move["jobKey"], move["shard"], move["target"])
    return {"shard": move["shard"], "moved": moved}


async def list_pages(deps: Deps, scan: dict) -> dict:
    """Up to ``maxPages`` List Tasks pages of one creation-time slice, in order, each kept per shard
    for the sweeps; returns how many were listed and where the slice's next page starts, or ``split``
    for a dense slice (its first page full) the orchestrator should cut finer, or ``gone`` when Batch
    no longer has the job."""
    piece = scan["slice"]
    next_link, page_number = piece["next"], piece["pages"]
    listed = invalid = 0
    span: list[int] | None = None  # first and last creation tick listed
    for _ in range(scan["maxPages"]):
        task_filter = None if next_link else creation_filter(piece["low"], piece["high"])
        try:
            page = await deps.batch.list_page(scan["jobId"], next_link, task_filter=task_filter)
        except ResourceNotFoundError:
            return {"gone": True}
        if next_link is None and page.next_link and scan["maySplit"] and piece["high"] - piece["low"] >= 2:
            return {"split": True}
        by_shard, skipped, created = _by_shard(page.tasks, scan, deps.now)
        span = workflow.widened(span, created)
        await deps.store.record_listing(
            scan["jobKey"], scan["scanId"], f"{piece['low']:019d}-{page_number:06d}", by_shard
        )
        listed, invalid, page_number = listed + len(page.tasks) - skipped, invalid + skipped, page_number + 1
        next_link = page.next_link
        if not next_link:
            break
    return {
        "next": next_link,
        "pages": page_number - piece["pages"],
        "listed": listed,
        "invalid": invalid,
        "created": span,
    }


def _by_shard(tasks: list[dict], scan: dict, now: datetime) -> tuple[dict[int, list], int, list[int] | None]:
    """A page's tasks per shard as (id, status); how many were skipped as invalid; the first and last
    of their creation ticks."""
    by_shard: dict[int, list] = defaultdict(list)
    invalid = 0
    created: list[int] = []
    for raw in tasks:
        try:
            task_id, status = task_status(raw, now)
        except InvalidEventError as error:
            invalid += 1
            logger.warning("listed task skipped: %s", error, extra={"job_id": scan["jobId"], "task_id": raw.get("id")})
            continue
        by_shard[shard_of(task_id.lower(), scan["partitions"])].append((task_id, status))
        try:  # only guides the next pass's slicing: a task without it is still checked
            created.append(ticks_of(raw.get("creationTime"), "creationTime", now))
        except InvalidEventError:
            pass
    return by_shard, invalid, [min(created), max(created)] if created else None


async def sweep(deps: Deps, scan: dict) -> dict:
    """Reconcile one partition with what the scan listed for it."""
    listed = await deps.store.listed_in_shard(scan["jobKey"], scan["scanId"], scan["shard"])
    return await deps.store.reconcile_partition(
        scan["jobKey"], scan["shard"], scan["partitions"], listed, scan["scanStartedTicks"], scan["jobId"]
    )


async def finish(deps: Deps, scan: dict) -> dict:
    """Mark the job validated as of the scan's start, with the drift found, and drop the listing."""
    totals = {
        name: sum(sweep_result[name] for sweep_result in scan["sweeps"])
        for name in ("checked", *DRIFT_KINDS, "countersRepaired", "counterCheckDeferred")
    }
    summary = {
        "scanStartedAt": ticks_to_iso(scan["scanStartedTicks"]),
        "finishedAt": deps.now.isoformat(),
        "tasksListed": scan["tasksListed"],
        "pages": scan["pages"],
        "corrected": {kind: totals[kind] for kind in DRIFT_KINDS},
        "countersRepaired": totals["countersRepaired"],
        "counterCheckDeferred": totals["counterCheckDeferred"],
    }
    await deps.store.mark_validation(
        scan["jobKey"], VALIDATED, None, ticks_to_datetime(scan["scanStartedTicks"]), summary, scan.get("createdSpan")
    )  # where the next pass slices
    await deps.store.drop_scans(scan["jobKey"], scan_id=scan["scanId"])
    drift = sum(summary["corrected"].values()) + summary["countersRepaired"]
    log = logger.warning if drift else logger.info
    log(
        "job validated: %d tasks listed, corrected %s, %d counter rows repaired",
        summary["tasksListed"],
        summary["corrected"],
        summary["countersRepaired"],
        extra={"job_id": scan["jobId"], **summary["corrected"]},
    )
    return {"jobId": scan["jobId"], "action": workflow.Action.VALIDATED, **summary}


GOING = ("Running", "Pending", "ContinuedAsNew")


def _runtime_of(status: Any) -> str | None:
    return getattr(getattr(status, "runtime_status", None), "value", None)


async def start_unless_running(client: Any, orchestrator: str, instance_id: str, payload: Any) -> bool:
    """Start an orchestration under a fixed id unless one is still going (Durable's client API)."""
    status = await client.get_status(instance_id)
    if _runtime_of(status) in GOING:
        logger.info("validation still running; not starting another", extra={"instance_id": instance_id})
        return False
    await client.start_new(orchestrator, instance_id, payload)
    logger.info("validation started", extra={"instance_id": instance_id, "orchestrator": orchestrator})
    return True


async def on_demand_status(client: Any, job_id: str) -> Reply:
    """``GET /api/jobs/{jobId}/validation``: the job's on-demand validation as Durable reports it,
    202 while it runs, 200 once it ended. Not Durable's own status URLs: they carry the extension's
    system key, which opens every instance's management API, in their query string."""
    status = await client.get_status(workflow.on_demand_instance_id(job_id.lower()))
    runtime = _runtime_of(status)
    if runtime is None:
        return error(
            404,
            "ValidationNotFound",
            f"No validation of the job {job_id!r} was started on demand "
            "(or its record is gone): POST .../validate starts one.",
        )
    stamp = {"createdTime": status.created_time, "lastUpdatedTime": status.last_updated_time}
    body = {
        "jobId": job_id,
        "runtimeStatus": runtime,
        "customStatus": status.custom_status,
        "output": status.output,
        **{name: value.isoformat() if isinstance(value, datetime) else value for name, value in stamp.items()},
    }
    return Reply(202, body, {"Retry-After": "2"}) if runtime in GOING else ok(body)
