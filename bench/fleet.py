"""Fleet benchmark: what the jobs list, the dashboard and the timers cost at 50,000 jobs against 500.

    .venv/bin/python -m bench.fleet [--jobs 50000] [--active 1000] [--small 500] [--repeats 3]

A fresh Azurite (in memory) and two fleets in it over 3 accounts, every job ingested for real
(one task each through ``CountsStore.apply``: registration, task and counter rows), the active ones
with a running task, then summarized (``SummarizeJobs``, backfill included) and given a progress
point (``RecordProgress``'s first run, timed once). Seeding the large fleet takes about 50 minutes
here (40 of them ingestion and backfill: a table per job partition, and Azurite slows as tables add
up), so each fleet is seeded once and measured ``--repeats`` times, a simulated minute apart. For
the small fleet and the large one:

1. jobs list: server time of ``GET /api/jobs?maxresults=100`` (``shared.api.list_jobs`` in this
   process: storage reads included, HTTP framing not), answered 200, p50 / p99 over 300 calls;
2. dashboard refresh: the storage requests of one refresh of the fleet view (totals, the jobs that
   need attention, a page of 50), counted by a pipeline policy on the store's client;
3. ``RecordProgress``: a run's time and storage requests once the first run is behind it (the
   active jobs and the changed ones), and the first run's;
4. ``SummarizeJobs``: a run's time and storage requests after every active job changed once;
5. host memory: the function host (``tools.funchost``) serving the large fleet from the same
   Azurite -- its resident memory (VmRSS) and peak (VmHWM) after 300 jobs pages and one run of
   each timer.
Medians over the repeats (the first RecordProgress run and the host: once); every figure in
bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from azure.data.tables.aio import TableServiceClient

from shared import api
from shared.accounts import Accounts, BatchAccount
from shared.config import Settings
from shared.counting import TaskResult, TaskState, TaskStatus
from shared.fleet import summarize_jobs
from shared.monitoring import record_progress
from shared.progress import ProgressRules
from shared.store import CountsStore, Observation
from shared.store import tasks as tasks_module
from tests.strategies import BASE_TICKS
from tools.azurite import Azurite
from tools.stack import MASTER_KEY, READ_KEY, Stack
from tools.termination import stop_children_on_termination

RESULTS = Path(__file__).resolve().parent / "results" / "fleet.json"
ACCOUNT_NAMES = ("benchmain", "benchtwo", "benchthree")
ACCOUNT_KEYS: tuple[str | None, ...] = (None, "benchtwo", "benchthree")  # as job keys name them
PAGE_CALLS = 300
RETENTION = timedelta(days=7)  # RETENTION_DAYS: how long finished jobs stay
SETTLED, MEASURED = timedelta(seconds=30), timedelta(seconds=60)  # Fleet.ahead after seeding, then for measuring
APPLY_JOBS = 500  # jobs per apply call while seeding


class RequestCounter:
    """Counts the requests the store sends to storage (azure-core's raw_request_hook)."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request) -> None:  # noqa: ANN001 -- azure-core's PipelineRequest
        self.requests += 1


@dataclass
class Fleet:
    prefix: str
    jobs: int
    active: int
    store: CountsStore = field(init=False)
    counter: RequestCounter = field(default_factory=RequestCounter)
    # The store's and the timers' clock runs ahead of the wall by this: the measured runs happen
    # "later" than the seeding, so the change marks the seeding left are behind every cursor.
    ahead: timedelta = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def settings_of(connection: str, prefix: str) -> Settings:
    return Settings.from_env({"AzureWebJobsStorage": connection, "COUNTS_TABLE_PREFIX": prefix})


ACCOUNTS = Accounts(tuple(BatchAccount(name, url=f"https://{name}.invalid") for name in ACCOUNT_NAMES))


async def seed(fleet: Fleet, connection: str) -> dict:
    """Ingest the fleet's jobs, summarize them and give each a progress point; seconds each step took."""
    service = TableServiceClient.from_connection_string(connection, raw_request_hook=fleet.counter)
    fleet.store = CountsStore(service, fleet.prefix, 1, utc_clock=fleet.now)
    await fleet.store.ensure_tables()
    timings = {}
    started = time.perf_counter()
    finished = list(range(fleet.active, fleet.jobs))
    chunks = [finished[start : start + APPLY_JOBS] for start in range(0, len(finished), APPLY_JOBS)]
    week_ago = datetime.now(UTC) - RETENTION
    for index, chunk in enumerate(chunks):  # last changed over the past week, as retention keeps them
        written_at = week_ago + RETENTION * index / len(chunks)
        with _counts_written_at(written_at):
            await fleet.store.apply([_observed(n, TaskState.COMPLETED) for n in chunk])
    await fleet.store.apply([_observed(n, TaskState.RUNNING) for n in range(fleet.active)])
    timings["ingest_s"] = time.perf_counter() - started
    rules = ProgressRules.from_settings(settings_of(connection, fleet.prefix))
    started = time.perf_counter()
    while not (await summarize_jobs(fleet.store, rules, fleet.now())).backfill_done:
        pass
    timings["summarize_all_s"] = time.perf_counter() - started
    fleet.ahead = SETTLED
    await summarize_jobs(fleet.store, rules, fleet.now())  # the seeding's last marks read
    return timings


def _observed(n: int, state: TaskState) -> Observation:
    result = TaskResult.SUCCESS if state is TaskState.COMPLETED else None
    status = TaskStatus.observed(BASE_TICKS + 1, 0, state, result, 1)
    return Observation(f"job-{n:05d}", "t0", status, ACCOUNT_KEYS[n % len(ACCOUNT_KEYS)])


@contextmanager
def _counts_written_at(moment: datetime):
    """The write path stamps counter rows (a job's last change) with this time instead of the clock's."""
    original = tasks_module.utc_now
    tasks_module.utc_now = lambda: moment
    try:
        yield
    finally:
        tasks_module.utc_now = original


async def page_times(fleet: Fleet, settings: Settings) -> dict:
    rules = ProgressRules.from_settings(settings)
    times = []
    for _ in range(PAGE_CALLS):
        reading = api.Reading(rules, datetime.now(UTC))
        started = time.perf_counter()
        reply = await api.list_jobs(fleet.store, {"maxresults": "100"}, "http://app/api/jobs", reading, ACCOUNTS)
        times.append((time.perf_counter() - started) * 1000)
        assert reply.status == 200 and len(reply.body["value"]) == 100, reply.status
    times.sort()
    return {"p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99)}


async def refresh_requests(fleet: Fleet, settings: Settings) -> int:
    """Storage requests of one refresh of the dashboard's fleet view, after a first one (the days cached)."""
    rules = ProgressRules.from_settings(settings)

    async def refresh() -> None:
        reading = api.Reading(rules, datetime.now(UTC))
        url = "http://app/api/jobs"
        await asyncio.gather(
            api.job_totals(fleet.store, {}, "http://app/api/totals", reading, ACCOUNTS),
            api.list_jobs(fleet.store, {"maxresults": "12", "alert": "any"}, url, reading, ACCOUNTS),
            api.list_jobs(fleet.store, {"maxresults": "50"}, url, reading, ACCOUNTS),
        )

    await refresh()
    before = fleet.counter.requests
    await refresh()
    return fleet.counter.requests - before


async def first_progress_run(fleet: Fleet, settings: Settings) -> dict:
    """RecordProgress's first run: every job (once per seeded fleet)."""
    fleet.ahead = SETTLED
    return await _progress_run(fleet, settings)


async def timer_costs(fleet: Fleet, settings: Settings, repeat: int) -> dict:
    """A steady RecordProgress run (nothing changed since the last: the active jobs), then
    SummarizeJobs after every active job changed once; each repeat a minute later than the last."""
    fleet.ahead = MEASURED + timedelta(minutes=repeat)
    costs = {"record_progress_steady": await _progress_run(fleet, settings)}
    status = TaskStatus.observed(BASE_TICKS + 2 + repeat, 0, TaskState.ACTIVE, None, 1)
    changes = [
        Observation(f"job-{n:05d}", f"t{repeat + 1}", status, ACCOUNT_KEYS[n % len(ACCOUNT_KEYS)])
        for n in range(fleet.active)
    ]
    for start in range(0, len(changes), APPLY_JOBS):
        await fleet.store.apply(changes[start : start + APPLY_JOBS])
    before, started = fleet.counter.requests, time.perf_counter()
    run = await summarize_jobs(fleet.store, ProgressRules.from_settings(settings), fleet.now())
    costs["summarize_changed"] = {
        "s": time.perf_counter() - started,
        "requests": fleet.counter.requests - before,
        "jobs": run.summarized,
    }
    return costs


async def _progress_run(fleet: Fleet, settings: Settings) -> dict:
    before, started = fleet.counter.requests, time.perf_counter()
    run = await record_progress(fleet.store, settings, fleet.now())
    return {"s": time.perf_counter() - started, "requests": fleet.counter.requests - before, "jobs": run.jobs}


def host_memory(connection: str, prefix: str) -> dict:
    """The function host serving the fleet: its memory after pages and one run of each timer."""
    with Stack(
        storage_connection=connection,
        table_prefix=prefix,
        validation_schedule="0 0 0 1 1 *",
        service_log=False,
        task_sync_schedule=None,
        progress_schedule="0 0 0 1 1 *",
        summary_schedule="0 0 0 1 1 *",
    ) as stack:
        host = stack.processes[-1].pid
        for _ in range(PAGE_CALLS):
            reply = requests.get(
                f"{stack.app_url}/api/jobs?maxresults=100", headers={"x-functions-key": READ_KEY}, timeout=60
            )
            assert reply.status_code == 200, reply.text
        for timer, done in (("SummarizeJobs", "job summaries written"), ("RecordProgress", "progress recorded")):
            runs_before = stack.log_text("funchost").count(done)
            fired = requests.post(
                f"{stack.app_url}/admin/functions/{timer}", json={}, headers={"x-functions-key": MASTER_KEY}, timeout=60
            )
            assert fired.status_code == 202
            _wait_for_log(stack, done, runs_before)
        status = Path(f"/proc/{host}/status").read_text()
        return {name: int(_field(status, name)) / 1024 for name in ("VmRSS", "VmHWM")}


def _wait_for_log(stack: Stack, done: str, runs_before: int, timeout: float = 900) -> None:
    """Until the host's log says a timer's run ended (the admin API only starts it)."""
    deadline = time.monotonic() + timeout
    while stack.log_text("funchost").count(done) == runs_before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {done!r} within {timeout} s")
        time.sleep(0.5)


def _field(status: str, name: str) -> str:
    line = next(line for line in status.splitlines() if line.startswith(f"{name}:"))
    return line.split()[1]  # kB


def _pct(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))], 2)


async def measure(repeats: int, jobs: int, active: int, small: int) -> dict:
    """Seed both fleets in one Azurite, then measure each ``repeats`` times (and the host once)."""
    with Azurite() as azurite:
        connection = azurite.connection_string
        result: dict = {}
        for label, size, running in (("small", small, max(1, active * small // jobs)), ("large", jobs, active)):
            fleet = Fleet(f"f{label}", size, running)
            settings = settings_of(connection, fleet.prefix)
            result[label] = {"jobs": size, "active": running, **await seed(fleet, connection)}
            result[label]["record_progress_first"] = await first_progress_run(fleet, settings)
            result[label]["repeats"] = []
            for repeat in range(repeats):
                measured = {
                    "page": await page_times(fleet, settings),
                    "refresh_requests": await refresh_requests(fleet, settings),
                    **await timer_costs(fleet, settings, repeat),
                }
                result[label]["repeats"].append(measured)
                print(label, repeat, json.dumps(measured), flush=True)
            await fleet.store.close()
        result["host_mb"] = await asyncio.to_thread(host_memory, connection, "flarge")
        print("host", json.dumps(result["host_mb"]), flush=True)
        return result


def median_of(repeats: list[dict], path: list[str]) -> float:
    values = []
    for repeat in repeats:
        value = repeat
        for key in path:
            value = value[key]
        values.append(value)
    return round(statistics.median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--active", type=int, default=1_000)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each seeded fleet")
    args = parser.parse_args()
    stop_children_on_termination()
    result = asyncio.run(measure(args.repeats, args.jobs, args.active, args.small))
    figures: dict = {}
    for label in ("small", "large"):
        repeats = result[label]["repeats"]
        figures[label] = {
            "page_p50_ms": median_of(repeats, ["page", "p50_ms"]),
            "page_p99_ms": median_of(repeats, ["page", "p99_ms"]),
            "refresh_requests": median_of(repeats, ["refresh_requests"]),
            "record_progress_steady_s": median_of(repeats, ["record_progress_steady", "s"]),
            "record_progress_steady_requests": median_of(repeats, ["record_progress_steady", "requests"]),
            "record_progress_steady_jobs": median_of(repeats, ["record_progress_steady", "jobs"]),
            "summarize_changed_s": median_of(repeats, ["summarize_changed", "s"]),
            "summarize_changed_requests": median_of(repeats, ["summarize_changed", "requests"]),
            "record_progress_first": result[label]["record_progress_first"],
            "seeding_s": {name: round(result[label][name], 1) for name in ("ingest_s", "summarize_all_s")},
        }
    figures["host_mb"] = result["host_mb"]
    print(json.dumps(figures, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(),
                "machine": platform.platform(),
                "args": vars(args),
                "medians": figures,
                "result": result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
