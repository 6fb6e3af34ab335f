"""Ingestion benchmarks, each figure a ratio measured in the same run against the same Azurite.

    .venv/bin/python -m bench.ingestion [--events 20000]

1. write ceiling: entities/s writing 100-insert transactions (no counting logic), 8 in flight, sent as
   the write path sends them (shared.store.transactions);
2. batched ingestion: events/s through the TaskEvents code path (shared.ingest.handle_delivery,
   from JSON bytes to committed rows) for deliveries of 1, 100 and 1,000 events, 4 in flight,
   (a) one hot job (Batch counts 200,000 tasks in it: 16 partitions), (b) spread over 50 small jobs
   (one partition each); and both again with every job in 4 partitions, the design before sizing;
   and the hot job once more through the code as it was when issue #11 was filed (commit
   ``THEN_COMMIT``, extracted with ``git archive``, run by bench/ingestion_then.py in a subprocess
   against the same Azurite with the same deliveries);
3. naive baseline: the same events as one read-modify-write of one counter row per event, with
   ETag retry, 8 concurrent deliveries;
4. freshness and 5. read latency: a steady 1,000 events/s (100-event deliveries every 100 ms);
   freshness = from a delivery's arrival to the first GetTaskCounts that shows it; read latency =
   GetTaskCounts while that runs, from the ingesting process and from a second worker process;
6. polls: what a dashboard's poll costs the server answered 200 (no ETag, or a stale one) against
   304 (If-None-Match current): server time through shared.api (storage reads included, HTTP framing
   not) and bytes on the wire (status line, headers, body), for one job's counts (16 partitions and
   1) and for a page of 100 jobs;
7. transaction cost: where a write's time goes, client against Azurite: wall time, this process's
   CPU and Azurite's CPU per entity-group transaction of 1, 10 and 99 inserts, one at a time,
   through the SDK's submit_transaction and through the write path's own $batch.
Prints a table and writes bench/results/ingestion.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from shared import api
from shared.accounts import AccountId, Accounts, BatchAccount
from shared.config import Settings
from shared.fleet import summarize_jobs
from shared.ingest import apply_service_log, handle_delivery
from shared.monitoring import record_progress
from shared.progress import ProgressRules
from shared.replies import Reply
from shared.store import CountsStore
from shared.store import transactions as direct_transaction
from shared.store.resharding.protocol import ROWS_PER_PARTITION, partitions_for
from shared.store.tables import RESENDABLE
from tools.azurite import Azurite
from tools.termination import stop_children_on_termination

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
THEN_COMMIT = "e6ae035"  # main when issue #11 was filed: every job in 4 partitions, azure-core's $batch


DEFAULT_SETTINGS = Settings(None, None, None)


def hot_job_then(connection_string: str, events: list[dict], per_delivery: int) -> dict:
    """The hot-job deliveries through the code at THEN_COMMIT: events/s, or why it was not measured."""
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(
            ["git", "-C", str(BENCH.parent), "archive", THEN_COMMIT, "shared"], capture_output=True
        )
        if archive.returncode != 0:  # e.g. a shallow clone without that commit
            return {"not_measured": archive.stderr.decode(errors="replace").strip()}
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as extracted:
            extracted.extractall(tree, filter="data")
        deliveries = Path(tree) / "deliveries.json"
        deliveries.write_text(json.dumps([body.decode() for body in bodies(events, per_delivery)]))
        run = subprocess.run(
            [sys.executable, str(BENCH / "ingestion_then.py"), connection_string, str(deliveries)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": tree},
            check=True,
        )
    return json.loads(run.stdout.strip().splitlines()[-1])


def reading(etag: str | None) -> api.Reading:
    """A GET as the app reads it now, with default progress rules; ``etag``: the caller's If-None-Match."""
    return api.Reading(ProgressRules.from_settings(DEFAULT_SETTINGS), datetime.now(UTC), etag)


# The account the service-log records come from, configured by its ARM id as Bicep configures it.
BENCH_ACCOUNT_ID = (
    "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/BENCH"
    "/PROVIDERS/MICROSOFT.BATCH/BATCHACCOUNTS/BENCHACCOUNT"
)
BENCH_ACCOUNTS = Accounts((BatchAccount("benchaccount", AccountId.parse(BENCH_ACCOUNT_ID)),))
HOT_JOB_TASKS = 200_000  # the one hot job stands for a large job: Batch's count of it sizes its partitions


async def batch_job_size(account: str | None, job_id: str) -> int:
    """Stand-in for Batch's Get Task Counts, from the workload's job names ``{prefix}x{jobs}-{n}``."""
    jobs = job_id.split("-")[0].rpartition("x")[2]
    return HOT_JOB_TASKS if jobs == "1" else 1_000


def task_state_changed(event_id: str, at: str, data: dict) -> dict:
    """An Event Grid event (its own schema) carrying a Batch task object."""
    return {
        "id": event_id,
        "eventType": "Batch.TaskStateChanged",
        "subject": "s",
        "eventTime": at,
        "dataVersion": "1",
        "data": data,
    }


def lifecycle_events(count: int, jobs: int, prefix: str, start: int = 0) -> list[dict]:
    """Events ``start``..``count`` of tasks moving active -> running -> completed, interleaved across tasks."""
    events, states = [], ("active", "running", "completed")
    for n in range(start, count):
        task, step = divmod(n, 3)
        job = f"{prefix}-{task % jobs}"
        at = f"2025-06-01T{step:02d}:00:00.{task % 10_000_000:07d}Z"
        data = {"jobId": job, "id": f"t{task:07d}", "state": states[step], "stateTransitionTime": at}
        if step == 2:
            data["executionInfo"] = {"result": "success", "exitCode": 0}
        events.append(task_state_changed(f"{prefix}-{n}", at, data))
    return events


def start_and_complete(count: int, jobs: int, prefix: str) -> tuple[list[dict], list[dict]]:
    """The same transitions (each task starts, then completes) as service-log records and as
    Event Grid events: the two paths compared on one workload."""
    records, events = [], []
    for n in range(count):
        task, step = divmod(n, 2)
        job, task_id = f"{prefix}-{task % jobs}", f"t{task:07d}"
        at = f"2025-06-01T{step:02d}:00:00.{task % 10_000_000:07d}Z"
        if step == 0:
            operation, execution, state = "TaskStartEvent", {"startTime": at, "retryCount": 0}, "running"
        else:
            operation, state = "TaskCompleteEvent", "completed"
            execution = {"endTime": at, "exitCode": 0, "retryCount": 0, "requeueCount": 0, "result": "Success"}
        records.append(
            {
                "time": at,
                "resourceId": BENCH_ACCOUNT_ID,
                "category": "ServiceLog",
                "operationName": operation,
                "operationVersion": "2017-01-01",
                "properties": {"jobId": job, "id": task_id, "taskType": "User", "executionInfo": execution},
            }
        )
        data = {"jobId": job, "id": task_id, "state": state, "stateTransitionTime": at}
        if state == "completed":
            data["executionInfo"] = {"result": "success", "exitCode": 0}
        events.append(task_state_changed(f"{prefix}-{n}", at, data))
    return records, events


async def service_log(store: CountsStore, records: list[dict], per_invocation: int, per_message: int = 50) -> float:
    """Invocations of ``per_invocation`` records in messages of ``per_message``, 4 in flight."""
    messages = [json.dumps({"records": records[i : i + per_message]}) for i in range(0, len(records), per_message)]
    per_call = max(1, per_invocation // per_message)
    invocations = [messages[i : i + per_call] for i in range(0, len(messages), per_call)]

    async def invoke(batch: list[str]):
        outcome = await apply_service_log(store, batch, datetime.now(UTC), BENCH_ACCOUNTS)
        assert outcome.rejected == 0

    seconds = await run_concurrently(invoke, invocations, 4)
    return len(records) / seconds


def bodies(events: list[dict], per_delivery: int) -> list[bytes]:
    return [json.dumps(events[i : i + per_delivery]).encode() for i in range(0, len(events), per_delivery)]


async def run_concurrently(work, items, in_flight: int) -> float:
    queue = list(items)
    started = time.perf_counter()

    async def worker():
        while queue:
            await work(queue.pop())

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - started


async def write_ceiling(store: CountsStore, entities: int) -> float:
    """Inserts of 100 rows over 16 partitions, each in its table as the write path stores them."""
    rows = [
        {
            "PartitionKey": f"ceiling|{n % 16:02x}",
            "RowKey": f"r{n:08d}",
            "State": "running",
            "Slots": 1,
            "Version": "0" * 40,
        }
        for n in range(entities)
    ]
    by_partition: dict[str, list] = {}
    for row in rows:
        by_partition.setdefault(row["PartitionKey"], []).append(row)
    transactions = [
        [("create", r) for r in part[i : i + 100]] for part in by_partition.values() for i in range(0, len(part), 100)
    ]
    tables = store.task_rows.tables
    for pk in by_partition:
        await tables.create(pk)
    # Sent as the write path sends them (its own $batch body): the ceiling is storage's, not azure-core's.
    seconds = await run_concurrently(
        lambda operations: direct_transaction.submit(
            tables.of(operations[0][1]["PartitionKey"]), operations, **RESENDABLE
        ),
        transactions,
        8,
    )
    return entities / seconds


async def baseline_table(store: CountsStore):
    """A table for rows written outside the write path (baselines, raw transaction costs)."""
    await store.task_rows.tables.create("baseline|00")
    return store.task_rows.tables.of("baseline|00")


async def batched(store: CountsStore, events: list[dict], per_delivery: int) -> float:
    payloads = bodies(events, per_delivery)

    async def deliver(body: bytes):
        reply = await handle_delivery(store, "POST", {}, body, datetime.now(UTC))
        assert reply.status == 200, reply.body

    seconds = await run_concurrently(deliver, payloads, 4)
    return len(events) / seconds


async def naive(store: CountsStore, events: list[dict]) -> tuple[float, float]:
    """One counter row per job, read-modify-write per event with ETag retry (all in one table)."""
    table = await baseline_table(store)
    attempts = conflicts = 0

    async def apply(event: dict):
        nonlocal attempts, conflicts
        key = {"PartitionKey": f"naive|{event['data']['jobId']}", "RowKey": "!counts"}
        while True:
            attempts += 1
            try:
                row = await table.get_entity(key["PartitionKey"], key["RowKey"])
            except ResourceNotFoundError:
                try:
                    await table.create_entity({**key, event["data"]["state"]: 1})
                    return
                except ResourceExistsError:
                    conflicts += 1
                    continue
            row[event["data"]["state"]] = row.get(event["data"]["state"], 0) + 1
            try:
                await table.update_entity(row, etag=row.metadata["etag"], match_condition=MatchConditions.IfNotModified)
                return
            except ResourceModifiedError:
                conflicts += 1

    seconds = await run_concurrently(apply, events, 8)
    return len(events) / seconds, conflicts / attempts


async def steady_load(store: CountsStore, seconds: float, rate: int) -> dict:
    """rate events/s as 100-event deliveries; a reader measures freshness and read latency."""
    per_delivery, job = 100, "steady"
    deliveries = int(seconds * rate / per_delivery)
    sent_at: list[float] = []
    freshness: list[float] = []
    reads: list[float] = []
    done = asyncio.Event()

    async def producer():
        interval = per_delivery / rate
        start = time.perf_counter()
        pending = []
        for d in range(deliveries):
            await asyncio.sleep(max(0.0, start + d * interval - time.perf_counter()))
            events = [
                {
                    "id": f"s{d}-{i}",
                    "eventType": "Batch.TaskStateChanged",
                    "subject": "s",
                    "eventTime": "2025-06-01T00:00:00Z",
                    "dataVersion": "1",
                    "data": {
                        "jobId": job,
                        "id": f"t{d:05d}-{i:03d}",
                        "state": "active",
                        "stateTransitionTime": "2025-06-01T00:00:00Z",
                    },
                }
                for i in range(per_delivery)
            ]
            sent_at.append(time.perf_counter())
            pending.append(
                asyncio.create_task(handle_delivery(store, "POST", {}, json.dumps(events).encode(), datetime.now(UTC)))
            )
        await asyncio.gather(*pending)
        done.set()

    async def reader():
        seen = 0
        while seen < deliveries:
            started = time.perf_counter()
            reply = await api.get_task_counts(store, api.JobAddress(job, None), reading(None))
            ended = time.perf_counter()
            reads.append(ended - started)
            if reply.status == 200:
                visible = reply.body["taskCounts"]["active"] // per_delivery
                while seen < min(visible, len(sent_at)):
                    freshness.append(ended - sent_at[seen])
                    seen += 1
            await asyncio.sleep(0.005)

    await asyncio.gather(producer(), reader())
    return {
        "freshness_p50_ms": _pct(freshness, 50),
        "freshness_p99_ms": _pct(freshness, 99),
        "read_p50_ms": _pct(reads, 50),
        "read_p99_ms": _pct(reads, 99),
        "reads": len(reads),
        "deliveries": deliveries,
    }


def _reader_process(connection: str, job: str, seconds: float, queue) -> None:
    """GetTaskCounts in a process of its own (a second worker), polling while ingestion runs."""

    async def run() -> list[float]:
        store = CountsStore.from_settings(
            Settings.from_env({"AzureWebJobsStorage": connection, "COUNTS_TABLE_PREFIX": "bench"})
        )
        latencies, deadline = [], time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await api.get_task_counts(store, api.JobAddress(job, None), reading(None))
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)
        await store.close()
        return latencies

    queue.put(asyncio.run(run()))


async def steady_load_with_reader_process(store: CountsStore, connection: str, seconds: float, rate: int) -> dict:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    reader = context.Process(target=_reader_process, args=(connection, "steady", seconds, queue))
    reader.start()
    await steady_load(store, seconds, rate)
    latencies = await asyncio.to_thread(queue.get)
    reader.join()
    return {"read_p50_ms": _pct(latencies, 50), "read_p99_ms": _pct(latencies, 99), "reads": len(latencies)}


async def polls(store: CountsStore, iterations: int) -> dict:
    """Each poll twice: without an ETag (answered 200, full body) and with the current one (304)."""
    await record_progress(store, DEFAULT_SETTINGS, datetime.now(UTC))  # the progress object has history
    await summarize_jobs(store, ProgressRules.from_settings(DEFAULT_SETTINGS), datetime.now(UTC))  # the jobs list's
    polled = {
        "counts, 16-partition job": lambda etag: api.get_task_counts(
            store, api.JobAddress("b1000x1-0", None), reading(etag)
        ),
        "counts, 1-partition job": lambda etag: api.get_task_counts(
            store, api.JobAddress("b1000x50-0", None), reading(etag)
        ),
        "jobs, page of 100": lambda etag: api.list_jobs(
            store, {"maxresults": "100"}, "http://app/api/jobs", reading(etag), BENCH_ACCOUNTS
        ),
    }
    results = {}
    for name, poll in polled.items():
        etag = (await poll(None)).headers["ETag"]
        times: dict[int, list[float]] = {200: [], 304: []}
        sizes: dict[int, int] = {}
        for _ in range(iterations):
            for offered in (None, etag):
                started = time.perf_counter()
                reply = await poll(offered)
                times[reply.status].append(time.perf_counter() - started)
                sizes[reply.status] = _wire_bytes(reply)
        results[name] = {
            str(status): {
                "server_ms_p50": _pct(spent, 50),
                "server_ms_p99": _pct(spent, 99),
                "bytes": sizes[status],
                "polls": len(spent),
            }
            for status, spent in times.items()
        }
    return results


async def transaction_cost(store: CountsStore, azurite: Azurite, transactions: int = 60) -> dict:
    """Per transaction of inserts, one at a time, through the SDK's submit_transaction and through the
    write path's own $batch (shared.store.transactions): wall ms, this process's CPU ms, Azurite's CPU
    ms, rows/s."""
    table = await baseline_table(store)
    senders = {
        "sdk": lambda operations: table.submit_transaction(operations, **RESENDABLE),
        "direct": lambda operations: direct_transaction.submit(table, operations, **RESENDABLE),
    }
    results: dict = {}
    for sender, submit in senders.items():
        for size in (1, 10, 99):
            batches = [
                [
                    (
                        "create",
                        {
                            "PartitionKey": f"cost-{sender}",
                            "RowKey": f"{size}-{b:03d}-{i:03d}",
                            "State": "active",
                            "Version": "0" * 40,
                            "Slots": 1,
                        },
                    )
                    for i in range(size)
                ]
                for b in range(transactions)
            ]
            cpu, azurite_cpu, wall = time.process_time(), _cpu_seconds(azurite.process.pid), time.perf_counter()
            for batch in batches:
                await submit(batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            azurite_cpu = _cpu_seconds(azurite.process.pid) - azurite_cpu
            results[f"{sender} {size}"] = {
                "wall_ms": round(1000 * wall / transactions, 1),
                "client_cpu_ms": round(1000 * cpu / transactions, 1),
                "azurite_cpu_ms": round(1000 * azurite_cpu / transactions, 1),
                "rows_per_s": round(size * transactions / wall),
            }
    return results


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wire_bytes(reply: Reply) -> int:
    """An HTTP/1.1 response's size: status line, headers, blank line, body."""
    head = f"HTTP/1.1 {reply.status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in reply.all_headers.items()) + "\r\n"
    return len(head.encode()) + len(reply.text.encode())


def _pct(values: list[float], percentile: int) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * percentile / 100))], 1)


async def main(events_per_run: int) -> dict:
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    }
    with Azurite() as azurite:
        # Default settings, with Batch's Get Task Counts stood in for: a job is sized on first sight.
        store = CountsStore.from_settings(
            Settings.from_env({"AzureWebJobsStorage": azurite.connection_string, "COUNTS_TABLE_PREFIX": "bench"}),
            batch_job_size,
        )
        await store.ensure_tables()
        ceiling = await write_ceiling(store, events_per_run)
        results["write_ceiling_entities_per_s"] = round(ceiling)
        runs = []
        for per_delivery in (1, 100, 1000):
            count = min(events_per_run, 3000) if per_delivery == 1 else events_per_run
            for jobs in (1, 50):
                events = lifecycle_events(count, jobs, f"b{per_delivery}x{jobs}")
                rate = await batched(store, events, per_delivery)
                runs.append(
                    {
                        "events_per_delivery": per_delivery,
                        "jobs": jobs,
                        "events": count,
                        "events_per_s": round(rate),
                        "of_ceiling": round(rate / ceiling, 2),
                        "partitions_per_job": partitions_for(
                            await batch_job_size(None, f"x{jobs}-0"), ROWS_PER_PARTITION
                        ),
                    }
                )
        results["batched"] = runs
        # The previous design, same run: every job spread over 4 partitions whatever its size.
        fixed = CountsStore.from_settings(
            Settings.from_env(
                {
                    "AzureWebJobsStorage": azurite.connection_string,
                    "COUNTS_TABLE_PREFIX": "fixed",
                    "JOB_PARTITIONS": "4",
                }
            )
        )
        await fixed.ensure_tables()
        results["fixed_four_partitions"] = {}
        for jobs in (1, 50):
            rate = await batched(fixed, lifecycle_events(events_per_run, jobs, f"fixed{jobs}"), 1000)
            results["fixed_four_partitions"][f"{jobs}_jobs"] = {
                "events_per_s": round(rate),
                "of_ceiling": round(rate / ceiling, 2),
            }
        await fixed.close()
        then = hot_job_then(azurite.connection_string, lifecycle_events(events_per_run, 1, "then1"), 1000)
        if "events_per_s" in then:
            then["of_ceiling"] = round(then["events_per_s"] / ceiling, 2)
        results["hot_job_at_filing"] = {"commit": THEN_COMMIT, **then}
        records, _ = start_and_complete(events_per_run, 10, "log")
        log_rate = await service_log(store, records, 1000)
        _, webhook_events = start_and_complete(events_per_run, 10, "hook")
        hook_rate = await batched(store, webhook_events, 1000)
        results["service_log_vs_webhook"] = {
            "records": len(records),
            "jobs": 10,
            "per_call": 1000,
            "service_log_records_per_s": round(log_rate),
            "webhook_events_per_s": round(hook_rate),
            "service_log_of_ceiling": round(log_rate / ceiling, 2),
        }
        naive_events = lifecycle_events(min(events_per_run, 3000), 1, "naive")
        naive_rate, conflict_share = await naive(store, naive_events)
        results["naive_events_per_s"] = round(naive_rate)
        results["naive_conflicting_attempts"] = round(conflict_share, 2)
        best = max(r["events_per_s"] for r in runs if r["events_per_delivery"] == 1000)
        results["batched_over_naive"] = round(best / naive_rate, 1)
        results["steady_1000_per_s"] = await steady_load(store, 20, 1000)
        results["steady_1000_per_s_reader_in_own_process"] = await steady_load_with_reader_process(
            store, azurite.connection_string, 20, 1000
        )
        results["polls"] = await polls(store, 100)
        results["transaction_cost"] = await transaction_cost(store, azurite)
        await store.close()
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description="ingestion benchmarks")
    parser.add_argument("--events", type=int, default=20_000, help="events per batched-ingestion run")
    events = parser.parse_args().events
    stop_children_on_termination()
    results = asyncio.run(main(events))
    print(f"write ceiling: {results['write_ceiling_entities_per_s']} entities/s (100-op transactions, 8 in flight)")
    print("events/delivery | jobs | events | events/s | of ceiling | partitions/job")
    for run in results["batched"]:
        print(
            f"{run['events_per_delivery']} | {run['jobs']} | {run['events']} | {run['events_per_s']} | "
            f"{run['of_ceiling']} | {run['partitions_per_job']}"
        )
    for jobs, fixed in results["fixed_four_partitions"].items():
        print(
            f"1000 | {jobs} | every job in 4 partitions (before sizing) | {fixed['events_per_s']} | "
            f"{fixed['of_ceiling']}"
        )
    then = results["hot_job_at_filing"]
    print(
        f"1000 | 1 | the code when #11 was filed ({then['commit']}) | "
        f"{then.get('events_per_s', 'not measured: ' + then.get('not_measured', ''))} | {then.get('of_ceiling', '')}"
    )
    compared = results["service_log_vs_webhook"]
    print(
        f"service log, 1,000-record invocations (messages of 50), {compared['jobs']} jobs: "
        f"{compared['service_log_records_per_s']} records/s ({compared['service_log_of_ceiling']:.0%} of ceiling); "
        f"webhook, 1,000-event deliveries, same workload: {compared['webhook_events_per_s']} events/s"
    )
    print(
        f"naive: {results['naive_events_per_s']} events/s ({results['naive_conflicting_attempts']:.0%} of attempts "
        f"conflicted); batched 1,000-event deliveries are {results['batched_over_naive']}x that"
    )
    print(f"steady 1,000 events/s, reads in the ingesting process: {results['steady_1000_per_s']}")
    print(
        f"steady 1,000 events/s, reads from a second worker process: "
        f"{results['steady_1000_per_s_reader_in_own_process']}"
    )
    print("poll | answered | server ms p50 | p99 | bytes")
    for name, answers in results["polls"].items():
        for status, figures in answers.items():
            print(f"{name} | {status} | {figures['server_ms_p50']} | {figures['server_ms_p99']} | {figures['bytes']}")
    print("sender, inserts per transaction | wall ms | client CPU ms | Azurite CPU ms | rows/s")
    for name, figures in results["transaction_cost"].items():
        print(
            f"{name} | {figures['wall_ms']} | {figures['client_cpu_ms']} | {figures['azurite_cpu_ms']} | "
            f"{figures['rows_per_s']}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingestion.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    cli()
