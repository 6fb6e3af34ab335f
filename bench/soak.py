"""Soak benchmark: a long steady load through the webhook, and whether the host's memory stays flat.

    .venv/bin/python -m bench.soak [--events 1000000] [--rate 2000] [--jobs 20]

Starts the local stack (Azurite, the Batch simulator, the function host; validation, sync and the
service log idle) and posts Event Grid deliveries of 500 task events (each task active -> running
-> completed, interleaved across ``--jobs`` jobs) to ``/api/taskevents`` at ``--rate`` events/s,
at most 8 deliveries in flight. The host's resident memory (VmRSS of its process) is sampled every
``--sample-every`` (100,000) events; the verdict compares the end with the first sample (target:
within 10%). At the end every job's counts are read through the API and checked against what was
sent. Prints a table and writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path

import aiohttp

from bench.ingestion import lifecycle_events
from tools.stack import INGEST_KEY, READ_KEY, Stack
from tools.termination import stop_children_on_termination

RESULTS = Path(__file__).resolve().parent / "results"
PER_DELIVERY = 500
IN_FLIGHT = 8
KEYED = {"x-functions-key": READ_KEY}
INGESTING = {"x-functions-key": INGEST_KEY}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def soak(stack: Stack, events: int, rate: int, jobs: int, sample_every: int) -> dict:
    host = stack.processes[-1].pid  # the function host, started last
    url = f"{stack.app_url}/api/taskevents"
    interval = PER_DELIVERY / rate
    slots = asyncio.Semaphore(IN_FLIGHT)
    samples: list[dict] = []
    late = 0  # deliveries that could not leave on schedule (all slots busy): the host fell behind
    failures: list[str] = []
    sent = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:

        async def deliver(body: bytes) -> None:
            try:
                for _ in range(10):  # Event Grid redelivers a 5xx; so does this
                    async with session.post(
                        url, data=body, headers={**INGESTING, "Content-Type": "application/json"}
                    ) as reply:
                        if reply.status == 200:
                            return
                        await asyncio.sleep(1)
                failures.append(f"delivery refused 10 times, last {reply.status}")
            finally:
                slots.release()

        pending: set[asyncio.Task] = set()
        for offset in range(0, events, PER_DELIVERY):
            due = started + (offset // PER_DELIVERY) * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if slots.locked():
                late += 1
            await slots.acquire()
            batch = lifecycle_events(min(events, offset + PER_DELIVERY), jobs, "soak", offset)
            task = asyncio.create_task(deliver(json.dumps(batch).encode()))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent = offset + len(batch)
            if sent % sample_every == 0:
                await asyncio.gather(*pending)  # the sample follows the events up to here, answered
                samples.append(
                    {
                        "events": sent,
                        "seconds": round(time.perf_counter() - started, 1),
                        "host_rss_mb": round(rss_mb(host), 1),
                    }
                )
                print(samples[-1], flush=True)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
        samples.append({"events": sent, "seconds": round(elapsed, 1), "host_rss_mb": round(rss_mb(host), 1)})
        counts = {}
        for n in range(jobs):
            async with session.get(f"{stack.app_url}/api/jobs/soak-{n}/taskcounts", headers=KEYED) as reply:
                counts[n] = (await reply.json())["taskCounts"]
    tasks = events // 3
    expected = {n: len(range(n, tasks, jobs)) for n in range(jobs)}
    right = all(
        counts[n]["completed"] == expected[n] == counts[n]["succeeded"]
        and counts[n]["active"] == 0
        and counts[n]["running"] == 0
        for n in range(jobs)
    )
    first = next(sample for sample in samples if sample["events"] >= sample_every)
    growth = samples[-1]["host_rss_mb"] / first["host_rss_mb"] - 1
    return {
        "events": sent,
        "rate_asked": rate,
        "rate_achieved": round(sent / elapsed),
        "late_deliveries": late,
        "failures": failures,
        "samples": samples,
        "rss_after_first_sample_mb": first["host_rss_mb"],
        "rss_at_end_mb": samples[-1]["host_rss_mb"],
        "growth_percent": round(100 * growth, 1),
        "within_10_percent": abs(growth) <= 0.10,
        "counts_right": right,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="soak benchmark")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=2_000, help="events per second")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--sample-every", type=int, default=100_000, help="events between memory samples")
    args = parser.parse_args()
    stop_children_on_termination()
    with Stack(
        validation_schedule="0 0 0 1 1 *", service_log=False, task_sync_schedule=None, job_partitions=1
    ) as stack:
        result = asyncio.run(soak(stack, args.events - args.events % 3, args.rate, args.jobs, args.sample_every))
    print(" | ".join(f"{name}: {value}" for name, value in result.items() if name != "samples"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                **result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
