"""Validation end to end, in-process: the simulator (real SDK over HTTP, SharedKey), ingestion
through the TaskEvents function over HTTP, the real workflow and activity folders driven by the
local durable engine, and the store in Azurite."""

import asyncio
import random
from datetime import UTC, datetime

import aiohttp
import azure.durable_functions as df
import pytest

from shared.config import get_settings
from shared.store import COUNTER_ROW, get_store, partition_key, shard_of
from shared.validation import activities, passes, workflow
from tests.conftest import APP_VALIDATION_MAX_TASKS
from tools.batchsim.publisher import Faults, publish
from tools.durable import DurableEngine
from tools.funchost import FunctionApp
from tools.stack import INGEST_KEY, READ_KEY


@pytest.fixture(scope="module")
def app(app_server):
    return app_server.app, app_server.url


def engine_for(function_app: FunctionApp, **overrides) -> DurableEngine:
    engine = function_app.durable_engine()
    engine.functions.update(overrides)
    return engine


async def deliver(url, account, faults: Faults | None = None, seed=0):
    return await publish(
        account.take_outbox(),
        f"{url}/api/taskevents",
        headers={"x-functions-key": INGEST_KEY},
        max_events_per_batch=1000,
        faults=faults or Faults(),
        concurrency=4,
        seed=seed,
    )


async def served(url, job_id):
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{url}/api/jobs/{job_id}/taskcounts", headers={"x-functions-key": READ_KEY}
        ) as response:
            assert response.status == 200
            return await response.json(content_type=None)


def new_job(account, job_id, tasks, width=5):
    """A job in the simulator with tasks t00000, t00001, ... (ids ``width`` digits wide)."""
    account.create_job(job_id)
    account.add_tasks(job_id, [f"t{n:0{width}d}" for n in range(tasks)])


async def jobs_with_tasks(url, account, job_ids, tasks):
    """Create jobs in the simulator and deliver their tasks' events."""
    for job in job_ids:
        new_job(account, job, tasks, width=1)
    await deliver(url, account)


async def served_as_truth(url, account, job_id) -> dict:
    """The API's body for a job, after asserting its task and slot counts equal the simulator's."""
    body = await served(url, job_id)
    assert (body["taskCounts"], body["taskSlotCounts"]) == truth(account, job_id)
    return body


def truth(account, job_id):
    counts = account.task_counts(job_id)
    return counts["taskCounts"], counts["taskSlotCounts"]


async def test_one_pass_closes_drops_and_keeps_events_that_overtook_the_scan(app, simulator):
    function_app, url = app
    account, _ = simulator
    job = "Validate-10k"
    account.create_job(job)
    account.add_tasks(job, [f"task-{n:06d}" for n in range(10_000)], required_slots=2)
    rng = random.Random(1)
    for _ in range(4):
        account.step(job, rng, 10_000)
    report = await deliver(url, account, Faults(drop=0.1, duplicate=0.1, reorder=True), seed=4)
    assert report.dropped > 1000 and report.duplicated > 1000
    before = await served(url, job)
    assert (before["taskCounts"], before["taskSlotCounts"]) != truth(account, job)
    assert before["validationStatus"] == "unvalidated"

    real_sweep = function_app.functions[workflow.SWEEP].entry
    overtaking = []
    overtaken = asyncio.Lock()

    async def overtake_then_sweep(scan):
        """After every page is listed, tasks move on and their events arrive before the sweeps: the
        listing is now older than the store and must not undo them."""
        async with overtaken:
            if not overtaking:
                for n in range(0, 400):
                    task = account.job(job).tasks.get(f"task-{n:06d}")
                    if task is not None and task.state in ("active", "preparing"):
                        account.start(job, task.id)
                        overtaking.append(task.id)
                    elif task is not None and task.state == "running":
                        account.complete(job, task.id, 0)
                        overtaking.append(task.id)
                added = [f"added-during-scan-{n}" for n in range(25)]  # absent from the listing, yet real
                account.add_tasks(job, added)
                overtaking.extend(added)
                assert (await deliver(url, account)).delivered == len(overtaking)
        return await real_sweep(scan)

    engine = engine_for(function_app, **{workflow.SWEEP: ("activityTrigger", overtake_then_sweep)})
    instance = await engine.run(workflow.VALIDATE_JOB, {"jobKey": job.lower(), "jobId": job}, "validate-job-x")
    assert instance.runtime_status == "Completed", instance.output
    result = instance.output
    assert result["action"] == "validated", result
    assert len(overtaking) > 50
    # every task once, over more pages than 10 (the job's creation times fanned out into slices)
    assert result["pages"] >= 10 and result["tasksListed"] == len(account.job(job).tasks) - 25

    after = await served_as_truth(url, account, job)
    assert after["validationStatus"] == "validated" and after["lastValidatedAt"].endswith("Z")
    corrected = after["lastValidation"]["corrected"]
    assert sum(corrected.values()) > 0 and corrected == result["corrected"]


async def test_removed_tasks_missing_tasks_and_a_broken_counter_are_corrected(app, simulator):
    function_app, url = app
    account, _ = simulator
    job = "repairs"
    new_job(account, job, 300, width=3)
    await deliver(url, account)
    for n in range(0, 30):
        account.delete_task(job, f"t{n:03d}", publish=False)  # deleted, the event lost
    account.add_tasks(job, [f"late-{n}" for n in range(20)], publish=False)  # added, never reported
    for n in range(100, 150):
        account.start(job, f"t{n:03d}", publish=False)  # moved on, unreported
    store = get_store(get_settings())
    table = store.task_rows.tables.of(partition_key(job, 1))
    broken = await table.get_entity(partition_key(job, 1), COUNTER_ROW)
    broken["Active"] += 7  # a counter row that disagrees with its task rows
    await table.update_entity(broken)

    instance = await engine_for(function_app).run(workflow.VALIDATE_JOB, {"jobKey": job, "jobId": job}, "v-repairs")
    result = instance.output
    assert result["action"] == "validated", result
    assert result["corrected"] == {"missing": 20, "stale": 50, "removed": 30}
    assert result["countersRepaired"] == 1
    await served_as_truth(url, account, job)

    again = await engine_for(function_app).run(workflow.VALIDATE_JOB, {"jobKey": job, "jobId": job}, "v-repairs")
    assert again.output["corrected"] == {"missing": 0, "stale": 0, "removed": 0}
    assert again.output["countersRepaired"] == 0


async def test_a_job_over_the_limit_reads_unvalidated_and_is_skipped_cheaply(app, simulator):
    function_app, url = app
    account, _ = simulator
    job = "too-big"
    account.create_job(job)
    account.add_tasks(job, [f"t{n:06d}" for n in range(APP_VALIDATION_MAX_TASKS + 1)], publish=False)
    account.start(job, "t000001")
    await deliver(url, account)
    listed = []
    real_page = function_app.functions[workflow.LIST_PAGES].entry

    async def page(scan):
        listed.append(scan)
        return await real_page(scan)

    engine = engine_for(function_app, **{workflow.LIST_PAGES: ("activityTrigger", page)})
    instance = await engine.run(workflow.VALIDATE_JOB, {"jobKey": job, "jobId": job}, "v-big")
    assert instance.output["action"] == "skipped" and listed == []
    body = await served(url, job)
    assert body["validationStatus"] == "unvalidated"
    assert f"over VALIDATION_MAX_TASKS ({APP_VALIDATION_MAX_TASKS})" in body["validationNote"]


async def scheduled_pass(app_server) -> dict:
    """What the ValidateCounts timer does, through the local host's real durable client endpoints."""
    client = df.DurableOrchestrationClient(app_server.local.client_binding())
    return await passes.schedule(client, activities.default_deps())


async def validated(app_server, job_ids, timeout=120) -> dict:
    """Wait for each job's own validation instance; their outputs by job id."""
    engine = app_server.local.engine
    instances = await asyncio.wait_for(
        asyncio.gather(*(engine.wait(workflow.on_demand_instance_id(job.lower())) for job in job_ids)), timeout
    )
    return {job: instance.output for job, instance in zip(job_ids, instances, strict=True)}


async def test_scheduled_pass_validates_changed_jobs_only_and_removes_jobs_batch_no_longer_has(app_server, simulator):
    url = app_server.url
    account, _ = simulator
    await jobs_with_tasks(url, account, ("keep-a", "gone-b"), 50)
    first = await scheduled_pass(app_server)
    assert {"keep-a", "gone-b"} <= set(first["started"])
    assert {output["action"] for output in (await validated(app_server, ["keep-a", "gone-b"])).values()} == {
        "validated"
    }

    account.delete_job("gone-b")
    second = await scheduled_pass(app_server)
    assert {"keep-a", "gone-b"}.isdisjoint(second["started"])  # unchanged
    assert "gone-b" in second["removing"]
    await app_server.local.engine.wait(workflow.REMOVAL_INSTANCE_ID)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/jobs/gone-b/taskcounts", headers={"x-functions-key": READ_KEY}) as response:
            assert response.status == 404
    assert (await served(url, "keep-a"))["validationStatus"] == "validated"


async def test_a_huge_jobs_pass_delays_no_small_job(app_server, simulator, monkeypatch):
    """A 200,000-task job's pass runs on while 20 small jobs change: each schedule tick validates
    every small job again, well within the period, and only the huge job skips ticks."""
    url, engine = app_server.url, app_server.local.engine
    account, _ = simulator
    monkeypatch.setenv("VALIDATION_MAX_TASKS", "1000000")
    get_settings.cache_clear()
    huge_id = workflow.on_demand_instance_id("huge")
    trigger, list_pages = engine.functions[workflow.LIST_PAGES]
    huge_calls = 0

    async def huge_pass_outlasts_the_test(scan):
        """The huge job lists its first calls, then holds until terminated: however fast this machine
        lists 200,000 tasks, its pass is still running when the small jobs' second pass ends."""
        nonlocal huge_calls
        if scan["jobKey"] == "huge":
            huge_calls += 1
            if huge_calls > 8:
                await asyncio.Event().wait()
        return await list_pages(scan)

    monkeypatch.setitem(engine.functions, workflow.LIST_PAGES, (trigger, huge_pass_outlasts_the_test))
    try:
        account.create_job("huge")
        account.add_tasks("huge", [f"t{n:06d}" for n in range(200_000)], publish=False)
        account.start("huge", "t000000")  # one event: the service knows the job
        small = [f"small-{n:02d}" for n in range(20)]
        await jobs_with_tasks(url, account, small, 20)
        first = await scheduled_pass(app_server)
        assert {"huge", *small} <= set(first["started"])
        assert {output["action"] for output in (await validated(app_server, small)).values()} == {"validated"}
        assert engine.instances[huge_id].runtime_status == "Running"

        changed_at = datetime.now(UTC)
        for job in small:
            account.start(job, "t0")
        await deliver(url, account)
        second = await scheduled_pass(app_server)
        assert set(small) <= set(second["started"]) and "huge" not in second["started"]
        assert second["stillRunning"] >= 1
        await validated(app_server, small)
        for job in small:
            body = await served_as_truth(url, account, job)
            assert datetime.fromisoformat(body["lastValidatedAt"].replace("Z", "+00:00")) >= changed_at
        assert engine.instances[huge_id].runtime_status == "Running"  # the huge pass is still going
    finally:
        engine.terminate(huge_id, "test over")
        await engine.wait(huge_id)
        monkeypatch.undo()
        get_settings.cache_clear()


async def test_retention_removes_completed_jobs_validated_long_ago_and_keeps_the_rest(app, simulator):
    from datetime import timedelta
    from functools import partial

    from shared.batch import get_batch
    from shared.validation.activities import Deps
    from shared.validation.scheduling import select_jobs

    function_app, url = app
    account, _ = simulator
    await jobs_with_tasks(url, account, ("old-done", "old-active"), 10)
    for job in ("old-done", "old-active"):
        instance = await engine_for(function_app).run(workflow.VALIDATE_JOB, {"jobKey": job, "jobId": job}, f"r-{job}")
        assert instance.output["action"] == "validated"
    account.job("old-done").state = "completed"
    settings = get_settings()
    later = datetime.now(UTC) + timedelta(days=settings.retention_days, hours=1)
    plan = await select_jobs(Deps(get_store(settings), partial(get_batch, settings), settings, later))
    removals = {job.job_id: job.reason for job in plan.remove}
    assert "old-done" in removals and "completed and validated over" in removals["old-done"]
    assert "old-active" not in removals
    soon = await select_jobs(Deps(get_store(settings), partial(get_batch, settings), settings, datetime.now(UTC)))
    assert "old-done" not in {job.job_id for job in soon.remove}


async def test_a_job_that_outgrew_its_partitions_is_resharded_then_validated(app, simulator, monkeypatch):
    """JOB_PARTITION_ROWS lowered under a 600-task job of 2 partitions: the pass moves its rows to 8
    partitions (sources in parallel), then lists and sweeps those; counts stay the truth."""
    function_app, url = app
    account, _ = simulator
    job = "outgrown"
    new_job(account, job, 600)
    await deliver(url, account)
    store = get_store(get_settings())
    assert (await store.get_job(job)).partitions == 2
    monkeypatch.setenv("JOB_PARTITION_ROWS", "100")
    get_settings.cache_clear()
    try:
        instance = await engine_for(function_app).run(workflow.VALIDATE_JOB, {"jobKey": job, "jobId": job}, "v-grown")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert instance.output["action"] == "validated", instance.output
    assert instance.output["corrected"] == {"missing": 0, "stale": 0, "removed": 0}
    assert (await store.get_job(job)).partitions == 8
    for shard in range(8):
        rows = [row async for row in store.partition_rows(job, shard) if row["RowKey"] != COUNTER_ROW]
        assert rows and all(shard_of(row["RowKey"], 8) == shard for row in rows)
    await served_as_truth(url, account, job)
