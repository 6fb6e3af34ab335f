"""Freshness with no producer: how long after Batch changes a task the API shows it.

    .venv/bin/python -m bench.freshness [--configs 1:0 1:60 1:180 100:60 1000:60] [--seconds 120]
                                        [--latency 0.1] [--then c4f8924] [--then-at 100:60] [--runs 3]

Per configuration (jobs x log delay x code) a fresh stack: Azurite, the Batch simulator (its service
log exported to its hub with a log-normal delay of that median, held to 3x the median; every Batch
call answered ``--latency`` s late; the account refusing past ``--account-limit`` calls a second
with 429) and a function host with the sync, the watched sync and the service-log reader on, no
Event Grid producer. Every job has ``--tasks`` tasks; each moves one step forward (a running task
completes, an active one starts) every ``--change-every`` seconds, staggered. One job is watched: it
is polled through GET taskcounts every 0.25 s, as the CLI's ``watch`` or the dashboard's job page
would. Up to ``--sample`` (50) of the others, spread over the fleet, are read every 2 s straight from
the app's tables, as GET taskcounts reads them but without marking them watched (reading the fleet
through GET /api/jobs costs O(jobs) storage reads a call -- the fleet issue -- and at 1,000 jobs
starved the local Azurite the sync writes to).

Freshness of a change = from the moment the simulator made it to the first read showing the job's
completed count at least that high (completed never falls here); the watched job is read every
0.25 s, the sampled others every 2 s, which bounds each figure's resolution. Reads go on after the changes
stop until every change has shown, for at most ``--grace`` seconds; a change not shown by then
counts as later than that. Also: Batch calls a second against the budget
(BATCH_REQUESTS_PER_SECOND, 25), 429s, and whether every job's counts equal the simulator's once
the changes stop. ``--then`` runs the same with the function host of an older commit (extracted
with ``git archive``; its own defaults) for comparison in the same run. Writes
bench/results/freshness.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import platform
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from shared.config import Settings
from shared.store import CountsStore
from tools.stack import READ_KEY, Stack
from tools.termination import stop_children_on_termination

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
KEYED = {"x-functions-key": READ_KEY}
WATCHED_EVERY = 0.25
SAMPLED_EVERY = 2.0
DEFAULT_THEN = "c4f8924"  # main before the freshness work: sync every 30 s, 100 jobs a run, no watched sync
SYNC_SCHEDULE = {"now": "*/10 * * * * *", "then": "*/30 * * * * *"}


@dataclass
class Changes:
    """Per job: the changes not yet seen, as (when, completed count after it), oldest first."""

    pending: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    lags: dict[str, list[float]] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)  # the job's count after its latest change

    def made(self, job: str, at: float, completed: int) -> None:
        """A step that completed a task (a step that only started one is not a change this measures)."""
        if completed > self.completed.get(job, 0):
            self.completed[job] = completed
            self.pending.setdefault(job, []).append((at, completed))

    def seen(self, job: str, at: float, completed: int) -> None:
        waiting = self.pending.get(job, [])
        while waiting and waiting[0][1] <= completed:
            self.lags.setdefault(job, []).append(at - waiting.pop(0)[0])

    def unseen(self, job: str) -> int:
        return len(self.pending.get(job, []))

    def all_seen(self) -> bool:
        return not any(self.pending.values())


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summary(lags: list[float], unseen: int, window: float) -> dict:
    """p50 / p99 of the lags, counting changes never shown as later than the window."""
    everything = lags + [math.inf] * unseen
    p50, p99 = percentile(everything, 0.5), percentile(everything, 0.99)

    def shown(value):
        return None if value is None else (f">{window:.0f}" if value == math.inf else round(value, 2))

    return {"changes": len(everything), "unseen": unseen, "p50_s": shown(p50), "p99_s": shown(p99)}


async def control(
    session: aiohttp.ClientSession, url: str, path: str, body: dict | None = None, method: str = "POST"
) -> dict:
    async with session.request(method, f"{url}/control/{path}", json=body) as response:
        response.raise_for_status()
        return await response.json(content_type=None)


def sample_of(jobs: list[str], size: int) -> list[str]:
    """Up to ``size`` jobs spread evenly over the fleet, the watched one (the first) left out."""
    others = jobs[1:]
    step = max(1, len(others) // size) if others else 1
    return others[::step][:size]


async def measure(
    stack: Stack, jobs: list[str], seconds: float, change_every: float, log_delay: float, grace: float, sample: int
) -> dict:
    sim, app = stack.simulator_url, stack.app_url
    watched, sampled = jobs[0], sample_of(jobs, sample)
    changes = Changes()
    tables = CountsStore.from_settings(
        Settings.from_env({"AzureWebJobsStorage": stack.connection, "COUNTS_TABLE_PREFIX": stack.table_prefix})
    )
    async with aiohttp.ClientSession() as session:
        calls_before = sum((await control(session, sim, "calls", method="GET")).values())
        throttled_before = (await control(session, sim, "faults", {}))["throttled"]
        started = time.monotonic()
        stop_at = started + seconds

        def reading() -> bool:
            now = time.monotonic()
            return now < stop_at or (now < stop_at + grace and not changes.all_seen())

        async def drive() -> None:
            """Each job one step every change_every seconds, staggered; the log pumped every second."""
            tick = 0
            while time.monotonic() < stop_at:
                due = [job for n, job in enumerate(jobs) if (tick + n) % round(change_every * 2) == 0]
                if due:
                    moved = await control(session, sim, "advance", {"jobs": due, "publish": False})
                    at = time.monotonic()
                    for job, completed in moved["completed"].items():
                        changes.made(job, at, completed)
                if tick % 2 == 0:  # Azure Monitor exports as the log is written: every second here
                    pump = {"noise": 0, "recordsPerMessage": 50}
                    if log_delay:
                        pump["exportDelay"] = {"median": log_delay, "tail": 3 * log_delay}
                    await control(session, sim, "servicelog", pump)
                tick += 1
                await asyncio.sleep(max(0.0, started + tick * 0.5 - time.monotonic()))

        async def watch() -> None:
            while reading():
                async with session.get(f"{app}/api/jobs/{watched}/taskcounts", headers=KEYED) as response:
                    if response.status == 200:
                        changes.seen(watched, time.monotonic(), (await response.json())["taskCounts"]["completed"])
                await asyncio.sleep(WATCHED_EVERY)

        async def read_sampled() -> None:
            while reading():
                for job in sampled:
                    counts = await tables.get_job_counts(job.lower())
                    if counts is not None:
                        changes.seen(job, time.monotonic(), counts.tasks.completed)
                await asyncio.sleep(SAMPLED_EVERY)

        await asyncio.gather(drive(), watch(), read_sampled())
        elapsed = time.monotonic() - started
        calls = sum((await control(session, sim, "calls", method="GET")).values()) - calls_before
        throttled = (await control(session, sim, "faults", {}))["throttled"] - throttled_before
        unwatched_lags = [lag for job in sampled for lag in changes.lags.get(job, [])]
        unwatched_unseen = sum(changes.unseen(job) for job in sampled)
        # the end: the log drained at once, then every job equal to the simulator's truth (or not, within 5 min)
        await control(session, sim, "servicelog", {"noise": 0})
        equal, deadline = False, time.monotonic() + 300
        while not equal and time.monotonic() < deadline:
            truth = await control(session, sim, "taskcounts", method="GET")
            served = {job: await tables.get_job_counts(job.lower()) for job in jobs}
            equal = all(counts is not None and counts.tasks.as_dict() == truth[job] for job, counts in served.items())
            if not equal:
                await asyncio.sleep(5)
    await tables.close()
    return {
        "watched": summary(changes.lags.get(watched, []), changes.unseen(watched), grace),
        "unwatched": summary(unwatched_lags, unwatched_unseen, grace) if sampled else None,
        "unwatched_sampled": len(sampled),
        "batch_calls_per_s": round(calls / elapsed, 1),
        "throttled_429": throttled,
        "counts_equal_truth": equal,
    }


def then_tree(commit: str, into: Path) -> Path | None:
    archive = subprocess.run(["git", "-C", str(BENCH.parent), "archive", commit], capture_output=True)
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as extracted:
        extracted.extractall(into, filter="data")
    return into


def run_one(jobs: int, tasks: int, log_delay: float, code: str, app_repo: Path, args) -> dict:
    names = [f"fresh-{n:04d}" for n in range(jobs)]
    with Stack(
        validation_schedule="0 0 0 1 1 *",
        task_sync_schedule=SYNC_SCHEDULE[code],
        service_log=True,
        progress_schedule="0 0 0 1 1 *",
        app_repo=app_repo,
    ) as stack:

        async def prepare_and_measure() -> dict:
            async with aiohttp.ClientSession() as session:
                await control(
                    session, stack.simulator_url, "faults", {"latency": args.latency, "rateLimit": args.account_limit}
                )
                for name in names:
                    await control(session, stack.simulator_url, "jobs", {"id": name, "tasks": tasks, "publish": False})
                await control(session, stack.simulator_url, "servicelog", {"noise": 0})  # nothing yet: no records
            tables = CountsStore.from_settings(
                Settings.from_env({"AzureWebJobsStorage": stack.connection, "COUNTS_TABLE_PREFIX": stack.table_prefix})
            )
            warm_up = time.monotonic()
            try:
                while time.monotonic() < warm_up + args.warm_up:  # every job known before the clock starts
                    if len(await tables.sync_positions()) == jobs:
                        break
                    await asyncio.sleep(2)
            finally:
                await tables.close()
            print(
                f"{jobs} jobs known after {time.monotonic() - warm_up:.0f} s ({code}, log delay {log_delay:g} s)",
                flush=True,
            )
            return await measure(stack, names, args.seconds, args.change_every, log_delay, args.grace, args.sample)

        result = asyncio.run(prepare_and_measure())
    return {"jobs": jobs, "log_delay_s": log_delay, "code": code, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["1:0", "1:60", "1:180", "100:60", "1000:60"],
        help="JOBS:LOG_DELAY pairs: active jobs, and the service log's median export delay (s)",
    )
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--change-every", type=float, default=10)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--account-limit", type=float, default=100, help="the simulated account's own limit (calls/s)")
    parser.add_argument("--warm-up", type=float, default=600)
    parser.add_argument("--grace", type=float, default=300, help="reading on after the changes stop, at most")
    parser.add_argument("--sample", type=int, default=50, help="unwatched jobs whose freshness is measured")
    parser.add_argument("--then", default=DEFAULT_THEN, help="older commit to compare with ('' to skip)")
    parser.add_argument("--then-at", type=str, default="100:60", help="JOBS:LOG_DELAY the older code runs at")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stop_children_on_termination()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        then_repo = then_tree(args.then, Path(scratch)) if args.then else None
        for run in range(args.runs):
            for config in args.configs:
                jobs, delay = config.split(":")
                rows.append({"run": run + 1, **run_one(int(jobs), args.tasks, float(delay), "now", BENCH.parent, args)})
                print(json.dumps(rows[-1]), flush=True)
            if then_repo is not None:
                jobs, delay = (float(v) for v in args.then_at.split(":"))
                rows.append({"run": run + 1, **run_one(int(jobs), args.tasks, delay, "then", then_repo, args)})
                print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "freshness.json").write_text(
        json.dumps(
            {
                "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
                "settings": {k: v for k, v in vars(args).items()},
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
