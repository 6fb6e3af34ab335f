"""The progress timer's work: record each job's history point, thin old points, raise alerts; and
the service log's own alert, when its reader falls far behind.

Alerts are warnings logged once per episode. The message itself carries the alert as JSON after
``ALERT_PREFIX``, because that is what reaches Application Insights' ``traces`` from any Python
worker (``extra`` fields may not become customDimensions); the Bicep log alert rules search it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.config import Settings
from shared.progress import (
    Alert,
    ProgressRules,
    alerts_due,
    iso,
    next_point,
    points_to_drop,
    progress_of,
    remaining,
)
from shared.store import CountsStore, JobCounts
from shared.store.codec.activity import bucket_of

logger = logging.getLogger(__name__)

ALERT_PREFIX = "TASKCOUNTS_ALERT "
SERVICE_LOG_LAGGING = "lagging"
OTHER_ACCOUNT = "otherAccount"
ACCOUNTS_NAMED = 10  # other accounts one alert record names (the count covers them all)
# The hub keeps records 7 days (servicelog-hub.bicep) while the trigger retries a failing batch
# forever: a day behind leaves days to mend the cause before a record is lost for good.
SERVICE_LOG_LAG_ALERT = timedelta(hours=24)
JOBS_AT_ONCE = 16  # jobs whose history one run reads and writes concurrently
# Rows of an upgraded deployment's history moved per run (shared.store.history), held until written:
# 20,000 rows of 10,000 finished jobs peaked at 34 MB; two requests a job, 16 jobs at a time.
LEGACY_HISTORY_ROWS_PER_RUN = 20_000


@dataclass(frozen=True)
class ProgressRun:
    jobs: int  # jobs looked at
    points: int  # points written
    alerts: int  # alerts raised
    thinned: int  # old points removed


PROGRESS_CURSOR = "progress"  # where RecordProgress's reading of the change marks stands


async def jobs_to_visit(store: CountsStore) -> tuple[list[JobCounts], set[str]]:
    """The jobs a run looks at, and the jobs that were active when last looked at: those marked
    changed since the last run, and the active ones (a stall is a job that does not change). A
    finished job nothing touched is not read. The first run (none before it) reads every job once."""
    active = await store.activity.active()
    cursor = await store.activity.cursor(PROGRESS_CURSOR)
    if cursor is None:
        return [job async for job in store.all_jobs()], active
    keys = await store.activity.changed_since(cursor) | active
    gate = asyncio.Semaphore(JOBS_AT_ONCE)

    async def read(job_key: str) -> JobCounts | None:
        async with gate:
            return await store.get_job_counts(job_key)

    found = await asyncio.gather(*(read(key) for key in sorted(keys)))
    for key in active - {job.job.job_key for job in found if job is not None}:
        await store.activity.set_active(key, False)  # removed since
    return [job for job in found if job is not None], active


async def record_progress(store: CountsStore, settings: Settings, now: datetime) -> ProgressRun:
    """One timer run over the jobs that changed or are still running (``jobs_to_visit``); a job's
    failure is logged and does not stop the others."""
    if not await store.move_legacy_history(LEGACY_HISTORY_ROWS_PER_RUN):
        # Recording waits for the move: a point written beside a job's unmoved history would hide it.
        logger.info("progress history moved in part: recording resumes once all of it is")
        return ProgressRun(0, 0, 0, 0)
    rules, gate = ProgressRules.from_settings(settings), asyncio.Semaphore(JOBS_AT_ONCE)
    jobs, active = await jobs_to_visit(store)

    async def one(job: JobCounts) -> tuple[int, int, int]:
        async with gate:
            recorded = await _record_job(store, settings, rules, job, now)
            running = remaining(job.tasks) > 0
            if running != (job.job.job_key in active):
                await store.activity.set_active(job.job.job_key, running)
            return recorded

    outcomes = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
    recorded = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    for job, outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.warning("could not record progress: %s", outcome, extra={"job_id": job.job.job_id})
    if jobs and not recorded:
        raise next(
            outcome for outcome in outcomes if isinstance(outcome, BaseException)
        )  # the host counts a failed run
    # Column sums of (points, alerts, thinned); the zero row keeps a run with no job at zeros.
    run = ProgressRun(len(recorded), *(sum(column) for column in zip((0, 0, 0), *recorded, strict=True)))
    if len(recorded) == len(jobs):  # else the next run reads the same changes again
        # One bucket behind: a mark written while this run read is read again by the next one.
        read_through = bucket_of(now) - 1
        await store.activity.move_cursor(PROGRESS_CURSOR, read_through)
        await store.activity.drop_read_changes()
    logger.info("progress recorded", extra={"jobs": run.jobs, "points": run.points, "alerts": run.alerts})
    return run


async def _record_job(
    store: CountsStore, settings: Settings, rules: ProgressRules, job: JobCounts, now: datetime
) -> tuple[int, int, int]:
    key = job.job.job_key
    episodes, held, series = await store.recent_progress(key, now - rules.window)
    point = next_point(series[-1] if series else None, job.tasks, now)
    if point is not None:
        series.append(point)
        held += 1
    progress = progress_of(series, job.tasks, now, rules)
    after, alerts = alerts_due(episodes, progress)
    for alert in alerts:
        _log_alert(job, alert)
    thinned = 0
    if held > settings.progress_max_points:
        times = await store.progress_point_times(key)
        if point is not None and point.at not in times:
            times.append(point.at)
        dropped = points_to_drop(times, settings.progress_max_points)
        await store.drop_progress_points(key, dropped)
        held, thinned = len(times) - len(dropped), len(dropped)
    if after != episodes:  # a stall or failure began or ended: its summary shows it (shared.fleet)
        await store.activity.mark_changed([key], now)
    if point is not None or after != episodes or thinned:
        await store.record_progress(key, point, after, held)
    return int(point is not None), len(alerts), thinned


def _log_alert(job: JobCounts, alert: Alert) -> None:
    record = {"alert": alert.kind, "jobId": job.job.job_id, "since": iso(alert.since), **job.tasks.as_dict()}
    _raise_alert(record, job_id=job.job.job_id, since=record["since"])


def _raise_alert(record: dict, **fields: object) -> None:
    """Log an alert record: ``ALERT_PREFIX`` and its JSON in the message, which the rules search."""
    logger.warning(
        "%s%s", ALERT_PREFIX, json.dumps(record, separators=(",", ":")), extra={"alert": record["alert"], **fields}
    )


def report_other_accounts(records_per_account: dict[str, int]) -> bool:
    """Raise the otherAccount alert for service-log records of accounts this deployment does not
    count (a diagnostic setting pointed at its hub for an account missing from its settings): each
    invocation that met some says how many, per account, so the alert and a query over it show it."""
    if not records_per_account:
        return False
    named = dict(sorted(records_per_account.items())[:ACCOUNTS_NAMED])
    record = {"alert": OTHER_ACCOUNT, "records": sum(records_per_account.values()), "resourceIds": named}
    _raise_alert(record, records=record["records"])
    return True


def report_service_log_lag(enqueued: list[datetime | None], now: datetime) -> bool:
    """Raise the lagging alert when an invocation's oldest record was enqueued a day or more ago (each
    retry of a failing batch raises it again, so it fires for as long as the reader is stuck)."""
    times = [when if when.tzinfo else when.replace(tzinfo=UTC) for when in enqueued if when is not None]
    if not times or now - min(times) < SERVICE_LOG_LAG_ALERT:
        return False
    oldest = min(times)
    record = {
        "alert": SERVICE_LOG_LAGGING,
        "oldestEnqueued": iso(oldest),
        "hoursBehind": round((now - oldest).total_seconds() / 3600, 1),
    }
    _raise_alert(record, since=record["oldestEnqueued"])
    return True
