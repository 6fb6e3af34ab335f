"""Chaos run: a workload through every transition, published with 20% duplicates, a full shuffle,
5% drops and 8 concurrent deliveries, while a proxy fails storage calls at random (before and after
Azurite does the work). Duplicates, reordering and retried failures must never move a count; only
the drops may, and one validation pass must then close the gap exactly.

CI runs it at CHAOS_EVENTS=20000 (the default); the large setting is CHAOS_EVENTS=100000 or more
(docs/design.md, "Guarantees", has the last large result)."""

import asyncio
import os
import random

import aiohttp
import pytest

from tools.azurite import free_port
from tools.batchsim.model import BatchAccount, counts_of_events
from tools.batchsim.publisher import Faults, publish
from tools.batchsim.server import serve
from tools.stack import INGEST_KEY, MASTER_KEY, READ_KEY, Stack

pytestmark = pytest.mark.e2e
KEYED = {"x-functions-key": READ_KEY}
INGESTING = {"x-functions-key": INGEST_KEY}
TARGET_EVENTS = int(os.environ.get("CHAOS_EVENTS", "20000"))
# Fraction of storage calls failed before / after Azurite did the work: high enough that some calls fail
# past the client's three retries, so Event Grid redelivers (at 0.15 / 0.15 a run saw 4 redeliveries; at
# 0.1 / 0.1 a CI run saw none once the write path needed half the calls it did).
STORAGE_FAULTS = (0.2, 0.2)


def workload(account: BatchAccount, jobs: int = 3) -> list:
    """Jobs whose tasks go through starts, successes, failures, retries, requeues, reactivation,
    deletion, then all finish, until the outbox holds TARGET_EVENTS events."""
    rng = random.Random(2024)
    tasks_per_job = max(200, TARGET_EVENTS // (jobs * 4))
    names = [f"Chaos-{n}" for n in range(jobs)]
    for name in names:
        account.create_job(name)
        account.add_tasks(name, [f"task-{t:06d}" for t in range(tasks_per_job)], required_slots=rng.choice([1, 2]))

    def finishing_events() -> int:  # finish() moves each unfinished task through start and complete
        return sum(2 for name in names for task in account.job(name).tasks.values() if task.state != "completed")

    for _ in range(100):  # bounded: late rounds move few tasks (most have completed)
        if len(account.outbox) + finishing_events() >= TARGET_EVENTS:
            break
        for name in names:
            account.step(name, rng, tasks_per_job // 2)
    for name in names:
        account.finish(name, rng)
        account.step(name, rng, tasks_per_job // 4)  # reactivations and deletions after the finish
    return names


async def get_json(session, url, headers=None):
    async with session.get(url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_chaos_run(capsys):
    account = BatchAccount()
    names = workload(account)
    events = account.take_outbox()
    assert len(events) >= TARGET_EVENTS
    assert counts_of_events(events) == {
        k: sum(account.task_counts(n)["taskCounts"][k] for n in names)
        for k in ("active", "running", "completed", "succeeded", "failed")
    }
    port = free_port()
    simulator = await serve(account, "127.0.0.1", port)
    try:
        stack = Stack(
            external_simulator_port=port,
            storage_faults=STORAGE_FAULTS,
            validation_schedule="0 0 0 1 1 *",
            service_log=False,
            task_sync_schedule=None,
        )  # the Event Grid path alone
        await asyncio.to_thread(stack.start)
        try:
            report = await publish(
                events,
                f"{stack.app_url}/api/taskevents",
                headers=INGESTING,
                max_events_per_batch=500,
                faults=Faults(drop=0.05, duplicate=0.2, reorder=True),
                concurrency=8,
                seed=7,
            )
            async with aiohttp.ClientSession() as session:
                # Storage calm again (reads under faults answer 503, as they should); then measure.
                async with session.post(f"{stack.proxy_url}/_faults", json={"before": 0, "after": 0}) as calm:
                    injected = await calm.json()
                dropped = set(report.dropped_sequences)
                before = {}
                for name in names:
                    delivered = [e for e in events if e.job_id == name and e.sequence not in dropped]
                    status, body = await get_json(session, f"{stack.app_url}/api/jobs/{name}/taskcounts", KEYED)
                    assert status == 200, body
                    before[name] = (
                        body["taskCounts"],
                        counts_of_events(delivered),
                        account.task_counts(name)["taskCounts"],
                    )

                # One validation pass: the scheduled one, fired through the admin endpoint.
                async with session.post(
                    f"{stack.app_url}/admin/functions/ValidateCounts", headers={"x-functions-key": MASTER_KEY}, json={}
                ) as fired:
                    assert fired.status == 202
                for name in names:  # each job's validation runs on its own, under the job's instance id
                    status_url = (
                        f"{stack.app_url}/runtime/webhooks/durabletask/instances/"
                        f"validate-job-{name.lower()}?code={MASTER_KEY}"
                    )
                    for _ in range(1200):
                        status, body = await get_json(session, status_url)
                        if status not in (202, 404):
                            break
                        await asyncio.sleep(0.1)
                    assert status == 200 and body["output"]["action"] == "validated", body
                after = {}
                for name in names:
                    _, counts = await get_json(session, f"{stack.app_url}/api/jobs/{name}/taskcounts", KEYED)
                    after[name] = counts["taskCounts"]
        finally:
            await asyncio.to_thread(stack.stop)
    finally:
        await simulator.cleanup()

    with capsys.disabled():
        print(
            f"\nchaos run: {report.events} events ({len(names)} jobs), {report.duplicated} duplicated, "
            f"{report.dropped} dropped, {report.batches} batches, 8 in flight; storage faults injected: "
            f"{injected['failed_before']} before + {injected['failed_after'] + injected['cut_after']} after Azurite "
            f"of {injected['requests']} calls; Event Grid-style redeliveries: {report.retries} "
            f"(statuses {report.statuses})"
        )
        for name in names:
            served, expected, truth = before[name]
            gap = sum(abs(served[k] - truth[k]) for k in truth)
            print(
                f"  {name}: before validation = truth minus drops: {served == expected} (gap to truth {gap}); "
                f"after one pass = truth: {after[name] == truth}"
            )
    assert report.retries > 0 and injected["failed_before"] + injected["failed_after"] + injected["cut_after"] > 0
    assert report.dead_lettered == 0
    for name in names:
        served, expected, truth = before[name]
        assert served == expected, f"{name}: duplicates, reordering or retries moved a count"
        assert after[name] == truth, f"{name}: validation did not close the gap"
