"""Validation benchmark: wall time and peak memory to validate simulator jobs of given sizes
with a fraction of tasks drifted (changed in Batch without an event).

    .venv/bin/python -m bench.validation --tasks 100000 500000 1000000 [--drift 0.01]
        [--parallel-listings 1 8] [--batch-latency 0.3]

Per size: a fresh Azurite and simulator; the job is created in the simulator and moved through its
states (one move per task on average), the store is seeded from it in bulk (timed apart; partitions
sized by Batch's count as on first sight: 100,000 tasks -> 8, 1,000,000 -> 64), 1% of tasks then
move silently, and one pass
runs in a child process (so its peak memory is its own), once per ``--parallel-listings`` value
(List Tasks pages in flight; the first pass corrects the drift, later ones find none). With
``--batch-latency S`` the simulator answers every Batch call S seconds late, as a remote Batch
does, without using this machine's CPU. Checks that the counts equal the truth afterwards. Prints
a table and writes bench/results/validation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from shared.batch import BatchReader
from shared.config import Settings
from shared.counting import counts_of
from shared.events import task_status
from shared.store import CountsStore, partition_key, shard_of
from shared.store import transactions as direct_transaction
from shared.store.codec.tasks import counter_row, task_row
from tools.azurite import Azurite, free_port
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY
from tools.termination import stop_children_on_termination

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


async def seed(settings: Settings, sim_url: str, job: str, tasks: int, drift: float) -> dict:
    """The job in the simulator, moved through its states; the store holding exactly what Batch lists
    (as if every event had arrived), written in bulk into the fresh partition tables: insert
    transactions of 100 rows (the write path's own ``$batch``), 8 in flight, counter rows last -- no
    read-before-write, which is what makes seeding 1,000,000 tasks take minutes rather than the half
    hour the ingestion path would. Then 1% drift silently."""
    # no client timeout: the simulator builds a 1,000,000-task job for minutes
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:

        async def control(path, body):
            async with session.post(f"{sim_url}/control/{path}", json=body) as response:
                assert response.status < 300, await response.text()
                return await response.json(content_type=None)

        await control("jobs", {"id": job, "tasks": tasks, "publish": False})
        await control(f"jobs/{job}/step", {"moves": tasks, "seed": 1, "publish": False})
        reader = BatchReader.for_account(settings.accounts.default, settings)
        store = CountsStore.from_settings(settings, lambda account, job_id: reader.job_size(job_id))
        started = time.perf_counter()
        partitions = await store.register_job(job)  # sized by Batch's own count, as on first sight
        job_key = job.lower()
        by_shard: dict[int, list] = {shard: [] for shard in range(partitions)}
        next_link = None
        while True:
            page = await reader.list_page(job, next_link)
            now = datetime.now(UTC)
            for raw in page.tasks:
                task_id, status = task_status(raw, now)
                by_shard[shard_of(task_id.lower(), partitions)].append((task_id, status))
            next_link = page.next_link
            if next_link is None:
                break
        tables = store.task_rows.tables
        seeded_at = datetime.now(UTC)
        transactions = []
        for shard, listed in by_shard.items():
            pk = partition_key(job_key, shard)
            await tables.create(pk)
            rows = [
                {**task_row(pk, task_id.lower(), status, seeded_at), "TaskId": task_id} for task_id, status in listed
            ]
            transactions += [(pk, [("create", row) for row in rows[i : i + 100]]) for i in range(0, len(rows), 100)]
        in_flight = asyncio.Semaphore(8)

        async def submit(pk, operations):
            async with in_flight:
                await direct_transaction.submit(tables.of(pk), operations)

        await asyncio.gather(*(submit(pk, operations) for pk, operations in transactions))
        for shard, listed in by_shard.items():
            pk = partition_key(job_key, shard)
            tasks_counts, slot_counts = counts_of(status for _, status in listed)
            await tables.of(pk).upsert_entity(counter_row(pk, tasks_counts, slot_counts, seeded_at))
        seeded = time.perf_counter() - started
        moved = (await control(f"jobs/{job}/step", {"moves": int(tasks * drift), "seed": 2, "publish": False}))["moves"]
        await reader.close()
        await store.close()
    return {"seed_seconds": seeded, "drifted": moved, "partitions": partitions}


async def served_counts(settings: Settings, job: str) -> dict:
    store = CountsStore.from_settings(settings)
    try:
        counts = await store.get_job_counts(job.lower())
        return counts.tasks.as_dict()
    finally:
        await store.close()


def run_size(tasks: int, drift: float, parallel_listings: list[int], latency: float) -> list[dict]:
    sim_port = free_port()
    env = dict(os.environ)
    with Azurite() as azurite:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "tools.batchsim", "--port", str(sim_port)], cwd=REPO, stdout=subprocess.DEVNULL
        )
        try:
            time.sleep(1.5)
            env.update(
                {
                    "AzureWebJobsStorage": azurite.connection_string,
                    "COUNTS_TABLE_PREFIX": "bench",
                    "BATCH_ACCOUNT_URL": f"http://127.0.0.1:{sim_port}",
                    "BATCH_ACCOUNT_NAME": DEFAULT_ACCOUNT,
                    "BATCH_ACCOUNT_KEY": DEFAULT_KEY,
                    "VALIDATION_MAX_TASKS": str(max(tasks, 200_000)),
                }
            )
            settings = Settings.from_env(env)
            job = f"bench-{tasks}"
            seeded = asyncio.run(seed(settings, env["BATCH_ACCOUNT_URL"], job, tasks, drift))
            asyncio.run(_set_latency(env["BATCH_ACCOUNT_URL"], latency))
            rows = []
            for parallel in parallel_listings:
                child = subprocess.run(
                    [sys.executable, "-m", "bench.validate_job", job],
                    cwd=REPO,
                    env={**env, "VALIDATION_PARALLEL_LISTINGS": str(parallel)},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(child.stdout.strip().splitlines()[-1])
                output = result["output"]
                rows.append(
                    {
                        "tasks": tasks,
                        "partitions": seeded["partitions"],
                        "rows_per_partition": tasks // seeded["partitions"],
                        "parallel_listings": parallel,
                        "batch_latency": latency,
                        "drifted": seeded["drifted"],
                        "seed_seconds": round(seeded["seed_seconds"], 1),
                        "wall_seconds": round(result["wall_seconds"], 1),
                        "listing_seconds": round(result["phase_seconds"]["listing"], 1),
                        "sweep_seconds": round(result["phase_seconds"]["sweeps"], 1),
                        "finish_seconds": round(result["phase_seconds"]["finish"], 1),
                        "peak_rss_mb": round(result["peak_rss_mb"]),
                        "pages": output.get("pages"),
                        "corrected": output.get("corrected"),
                        "matches_truth": asyncio.run(served_counts(settings, job))
                        == _truth(env["BATCH_ACCOUNT_URL"], job),
                    }
                )
        finally:
            simulator.terminate()
            simulator.wait()
    return rows


async def _set_latency(sim_url: str, latency: float) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim_url}/control/faults", json={"latency": latency}) as response:
            assert response.status == 200, await response.text()


def _truth(sim_url: str, job: str) -> dict:
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    counts = BatchClient(sim_url, AzureNamedKeyCredential(DEFAULT_ACCOUNT, DEFAULT_KEY)).get_job_task_counts(job)
    c = counts.task_counts
    return {
        "active": c.active,
        "running": c.running,
        "completed": c.completed,
        "succeeded": c.succeeded,
        "failed": c.failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="validation benchmark")
    parser.add_argument("--tasks", type=int, nargs="+", default=[10_000, 100_000, 200_000])
    parser.add_argument("--drift", type=float, default=0.01)
    parser.add_argument("--parallel-listings", type=int, nargs="+", default=[8])
    parser.add_argument("--batch-latency", type=float, default=0.0, help="seconds every Batch call is answered late")
    args = parser.parse_args()
    stop_children_on_termination()
    rows = [row for n in args.tasks for row in run_size(n, args.drift, args.parallel_listings, args.batch_latency)]
    header = [
        "tasks",
        "partitions",
        "rows_per_partition",
        "parallel_listings",
        "batch_latency",
        "drifted",
        "pages",
        "wall_seconds",
        "listing_seconds",
        "sweep_seconds",
        "finish_seconds",
        "peak_rss_mb",
        "matches_truth",
        "seed_seconds",
    ]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[name]) for name in header))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "validation.json").write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
