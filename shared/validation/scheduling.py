"""Which jobs a scheduled pass validates, and which it removes: the cost rule (a job's passes at
least a minute per 10,000 of its tasks apart), Batch's disagreeing counts, and the retention."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.store import JobCounts
from shared.validation.activities import Deps
from shared.validation.payloads import JobRef

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Plan:
    """Jobs to validate (``due``) and jobs to remove (gone from Batch, or completed and validated
    longer ago than the retention), each with its reason."""

    validate: list[JobRef]
    remove: list[JobRef]


async def select_jobs(deps: Deps) -> Plan:
    """What a scheduled pass does (see ``Plan``). A job of an account no longer configured is kept
    as it is, neither validated nor removed: a setting mistyped must not cost a fleet its history."""
    validate: list[JobRef] = []
    remove: list[JobRef] = []
    unconfigured = 0
    retention = timedelta(days=deps.settings.retention_days)
    async for job in deps.store.all_jobs():
        if job.job.account is not None and job.job.account not in deps.settings.accounts:
            unconfigured += 1
            continue
        ref = JobRef(job.job.job_id, job.job.job_key)
        if due(job, deps.now):
            validate.append(ref)
            continue
        if changed_since_validated(job):
            continue  # changed, but validated too recently for its size
        validated_at = job.job.last_validated_at
        state = await deps.batch(job.job.job_key).job_state(job.job.job_id)
        if state is None:
            remove.append(ref.removed_because("JobNotFound"))
        elif state == "completed" and validated_at is not None and deps.now - validated_at > retention:
            remove.append(ref.removed_because(f"completed and validated over {deps.settings.retention_days} days ago"))
    if unconfigured:
        logger.warning("jobs of accounts not configured are left as they are", extra={"jobs": unconfigured})
    logger.info("validation planned", extra={"validate": len(validate), "remove": len(remove)})
    return Plan(validate, remove)
