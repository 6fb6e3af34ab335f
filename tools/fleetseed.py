"""A fleet of job summaries written straight through the summaries' own write path, for the browser
test and the fleet benchmark: tens of thousands of jobs without ingesting their tasks.

Job ``job-{n:05d}`` belongs to account ``n % len(accounts)``; the first ``active`` have tasks left;
of those, ``stalled`` are stalled and ``failing`` failing; last changes are spread over the past week,
the active jobs' within the last minutes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.accounts import job_key_of
from shared.api import JobView
from shared.counting import Counts
from shared.progress import Progress
from shared.store import CountsStore, JobCounts, JobRecord
from shared.store.codec.summaries import Summary

WRITE_CHUNK = 2000  # summaries per write: the write reads their rows first, one range per account


@dataclass(frozen=True)
class Fleet:
    jobs: int
    active: int
    stalled: int = 0
    failing: int = 0


def job_id_of(n: int) -> str:
    return f"job-{n:05d}"


def summary_of(n: int, fleet: Fleet, accounts: tuple[str | None, ...], now: datetime) -> Summary:
    account = accounts[n % len(accounts)]
    active = n < fleet.active
    stalled = active and n < fleet.stalled
    failing = active and fleet.stalled <= n < fleet.stalled + fleet.failing
    tasks = Counts(active=5, running=3, completed=12, succeeded=12 - 4 * failing, failed=4 * failing)
    if not active:
        tasks = Counts(completed=20, succeeded=19, failed=1)
    last_change = now - (timedelta(seconds=n % 600) if active else timedelta(minutes=10 + (n * 7) % 10_000))
    job = JobRecord(job_key_of(account, job_id_of(n)), job_id_of(n), 1, last_change, "validated", last_change)
    progress = Progress(
        now,
        1.5 if active else None,
        now + timedelta(minutes=5) if active and not stalled else None,
        last_change if stalled else None,
        0.33 if failing else None,
        tasks.failed / tasks.completed if tasks.completed else None,
        failing,
    )
    view = JobView(JobCounts(job, tasks, tasks, last_change), progress, last_change, now)
    version = hashlib.sha256(repr(view.version()).encode()).hexdigest()[:24]
    return Summary(job.job_key, job.job_id, account, last_change, view.body(), version, tasks, stalled, failing)


async def seed(store: CountsStore, fleet: Fleet, accounts: tuple[str | None, ...], now: datetime) -> None:
    """Write the fleet's summaries (and their accounts' totals)."""
    await store.ensure_tables()
    for start in range(0, fleet.jobs, WRITE_CHUNK):
        end = min(fleet.jobs, start + WRITE_CHUNK)
        await store.summaries.write([summary_of(n, fleet, accounts, now) for n in range(start, end)], [])
