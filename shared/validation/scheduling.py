"""Which jobs a scheduled pass validates, and which it removes: the cost rule (a job's passes at
least a minute per 10,000 of its tasks apart), Batch's disagreeing counts, and the retention; and
which quiet jobs are worth asking Batch about at all."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.counting import Counts
from shared.fleet import SUMMARY_CURSOR
from shared.store import JobCounts, SyncPosition
from shared.store.codec.activity import bucket_start
from shared.validation.activities import Deps
from shared.validation.payloads import JobRef

logger = logging.getLogger(__name__)

TASKS_PER_MINUTE_APART = 10_000  # the cost rule: a job's passes are at least 1 minute per 10,000 of its tasks apart
# A job past the retention is asked about at most this often (one the sync saw finish: once after).
STATE_CHECK_INTERVAL = timedelta(hours=1)
SUMMARIES_CURRENT = timedelta(minutes=2)  # the summaries a plan reads counts from are at most this far behind


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


def worth_asking_batch(job: JobCounts, position: SyncPosition | None, now: datetime, retention: timedelta) -> bool:
    """Whether a quiet job's state is worth a Batch call now, to find it gone or past the retention:
    never asked; the sync saw Batch stop reporting it unfinished (completed or gone) since last
    asked; or validated longer than the retention ago and not asked in the last STATE_CHECK_INTERVAL.
    A job the sync lists as unfinished, or asked about lately, costs no call: a pass asks about
    what changed in Batch, not about every job it keeps."""
    checked = job.job.state_checked_at
    if checked is None:
        return True
    if position is not None and position.finished and position.synced_at is not None and position.synced_at > checked:
        return True
    validated_at = job.job.last_validated_at
    past_retention = validated_at is not None and now - validated_at > retention
    return past_retention and now - checked >= STATE_CHECK_INTERVAL


def changed_since_validated(job: JobCounts) -> bool:
    validated_at = job.job.last_validated_at
    return validated_at is not None and job.last_updated_at is not None and job.last_updated_at > validated_at


@dataclass(frozen=True)
class Plan:
    """Jobs to validate (``due``) and jobs to remove (gone from Batch, or completed and validated
    longer ago than the retention), each with its reason."""

    validate: list[JobRef]
    remove: list[JobRef]


async def jobs_to_plan(deps: Deps) -> AsyncIterator[JobCounts]:
    """Every job with its counts: as the job summaries have them while those are current (a query per
    1,000 jobs, not a read per job), else -- and for a job not summarized yet -- from its counter rows.
    Current: the summaries' backfill done and their timer's cursor at most SUMMARIES_CURRENT behind,
    so a stopped SummarizeJobs costs validation its cheap reads, never its schedule."""
    await deps.store.ensure_tables()
    cursor = await deps.store.activity.cursor(SUMMARY_CURSOR)
    done, _ = await deps.store.summaries.backfill_position()
    current = cursor is not None and done and deps.now - bucket_start(cursor) <= SUMMARIES_CURRENT
    briefs = await deps.store.summaries.briefs() if current else {}
    async for job in deps.store.job_index.records():
        brief = briefs.get(job.job_key)
        if brief is None:
            yield await deps.store.counts_of(job)
        else:
            yield JobCounts(job, brief.tasks, Counts(), brief.last_change)


async def select_jobs(deps: Deps) -> Plan:
    """What a scheduled pass does (see ``Plan``). A job of an account no longer configured is kept
    as it is, neither validated nor removed: a setting mistyped must not cost a fleet its history."""
    validate: list[JobRef] = []
    remove: list[JobRef] = []
    unconfigured = 0
    retention = timedelta(days=deps.settings.retention_days)
    positions = await deps.store.sync_positions()
    async for job in jobs_to_plan(deps):
        if job.job.account is not None and job.job.account not in deps.settings.accounts:
            unconfigured += 1
            continue
        ref = JobRef(job.job.job_id, job.job.job_key)
        if due(job, deps.now):
            validate.append(ref)
            continue
        if changed_since_validated(job):
            continue  # changed, but validated too recently for its size
        if not worth_asking_batch(job, positions.get(job.job.job_key), deps.now, retention):
            continue
        validated_at = job.job.last_validated_at
        state = await deps.batch(job.job.job_key).job_state(job.job.job_id)
        await deps.store.record_state_check(job.job.job_key, deps.now)
        if state is None:
            remove.append(ref.removed_because("JobNotFound"))
        elif state == "completed" and validated_at is not None and deps.now - validated_at > retention:
            remove.append(ref.removed_because(f"completed and validated over {deps.settings.retention_days} days ago"))
    if unconfigured:
        logger.warning("jobs of accounts not configured are left as they are", extra={"jobs": unconfigured})
    logger.info("validation planned", extra={"validate": len(validate), "remove": len(remove)})
    return Plan(validate, remove)
