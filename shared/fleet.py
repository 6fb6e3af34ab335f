"""The SummarizeJobs timer's work: keep each job's summary -- what the jobs list and the fleet's
totals show of it (shared.store.summaries) -- current with what changed since its last run.

A run reads the jobs marked changed since its cursor (ingestion, validation, the sync's Batch
comparison and RecordProgress's alerts mark them: shared.store.activity), each one's
counts and recent history, and writes their summaries; a job removed since loses its summary. A
deployment's first runs also summarize every job once (the backfill), a bounded number per run, so
that a deployment upgraded with many jobs shows them all after a few runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from shared.api import JobView
from shared.progress import ProgressRules, progress_of
from shared.store import CountsStore
from shared.store.codec.activity import bucket_of
from shared.store.codec.summaries import Summary

logger = logging.getLogger(__name__)

SUMMARY_CURSOR = "summaries"  # where this timer's reading of the change marks stands
BACKFILL_PER_RUN = 2000  # jobs the backfill summarizes in one run
JOBS_AT_ONCE = 16  # jobs whose counts and history one run reads concurrently


@dataclass(frozen=True)
class SummaryRun:
    summarized: int  # jobs whose summary was written
    removed: int  # jobs gone, their summary with them
    backfilled: int  # of the summarized, by the backfill
    backfill_done: bool


async def summarize_jobs(store: CountsStore, rules: ProgressRules, now: datetime) -> SummaryRun:
    """One run: the changed jobs' summaries, then a slice of the backfill while it lasts."""
    await store.ensure_tables()
    cursor = await store.activity.cursor(SUMMARY_CURSOR)
    if cursor is None:  # the first run: marks from now on are read; the backfill covers every job before
        cursor = bucket_of(now) - 1
        await store.activity.move_cursor(SUMMARY_CURSOR, cursor)
    changed = sorted(await store.activity.changed_since(cursor))
    summarized, removed = await _summarize(store, rules, changed, now)
    done, after = await store.summaries.backfill_position()
    backfilled = 0
    if not done:
        keys = await store.job_index.keys_after(after, BACKFILL_PER_RUN)
        backfilled, _ = await _summarize(store, rules, sorted(set(keys) - set(changed)), now)
        done = len(keys) < BACKFILL_PER_RUN
        await store.summaries.move_backfill(done, keys[-1] if keys else after)
    # One bucket behind: a mark written while this run read is read again by the next one.
    await store.activity.move_cursor(SUMMARY_CURSOR, bucket_of(now) - 1)
    await store.activity.drop_read_changes()
    run = SummaryRun(summarized + backfilled, removed, backfilled, done)
    logger.info(
        "job summaries written",
        extra={"jobs": run.summarized, "removed": run.removed, "backfilled": backfilled, "backfill_done": done},
    )
    return run


async def _summarize(store: CountsStore, rules: ProgressRules, job_keys: list[str], now: datetime) -> tuple[int, int]:
    """Write these jobs' summaries (a job gone: its summary removed); (written, removed)."""
    gate = asyncio.Semaphore(JOBS_AT_ONCE)

    async def one(job_key: str) -> Summary | None:
        async with gate:
            return await summary_of(store, rules, job_key, now)

    found = await asyncio.gather(*(one(key) for key in job_keys))
    summaries = [summary for summary in found if summary is not None]
    gone = [key for key, summary in zip(job_keys, found, strict=True) if summary is None]
    await store.summaries.write(summaries, gone)
    return len(summaries), len(gone)


async def summary_of(store: CountsStore, rules: ProgressRules, job_key: str, now: datetime) -> Summary | None:
    """The job's summary as of ``now``; None for a job not known here (removed)."""
    job, (_, _, series) = await asyncio.gather(
        store.get_job_counts(job_key), store.recent_progress(job_key, now - rules.window)
    )
    if job is None:
        return None
    view = JobView(job, progress_of(series, job.tasks, now, rules), series[-1].at if series else None, now)
    version = hashlib.sha256(json.dumps(view.version(), sort_keys=True, default=str).encode()).hexdigest()[:24]
    return Summary(
        job_key,
        job.job.job_id,
        job.job.account,
        job.last_updated_at or job.job.first_seen_at,
        view.body(),
        version,
        job.tasks,
        view.progress.stalled_since is not None,
        view.progress.failing,
    )
