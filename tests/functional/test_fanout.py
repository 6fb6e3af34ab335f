"""Validation's fan-out over creation-time slices, against the Batch simulator (through the real SDK
over HTTP) and Azurite, with the real workflow and activity folders: correct under change."""

import random

import aiohttp
import pytest

from shared.batch import creation_filter
from shared.config import get_settings
from shared.events import ticks_to_iso
from shared.store import get_store
from shared.validation import workflow
from shared.validation.payloads import ListingLimits
from tests.functional.test_validation import deliver, engine_for, new_job, served, served_as_truth
from tools.batchsim.publisher import Faults
from tools.stack import READ_KEY


@pytest.fixture(scope="module")
def app(app_server):
    return app_server.app, app_server.url


def job_input(job):
    return {"jobKey": job.lower(), "jobId": job}


async def simulator_control(sim_url, path, body):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim_url}/control/{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def test_state_changes_deletions_and_additions_during_the_fan_out_end_in_the_truth(app, simulator):
    function_app, url = app
    account, _ = simulator
    job = "Fanout-Change"
    new_job(account, job, 4000)
    rng = random.Random(5)
    account.step(job, rng, 3000, deletes=False)
    await deliver(url, account, Faults(drop=0.1), seed=1)  # drift for the pass to correct
    real_page = function_app.functions[workflow.LIST_PAGES].entry
    changed = {"calls": 0, "pages": 0, "added": 0}

    async def page_then_change(scan):
        """Between calls, tasks move on, some are deleted, new ones are added; their events arrive."""
        result = await real_page(scan)
        if "next" in result:
            changed["calls"] += 1
            changed["pages"] += result["pages"]
            account.step(job, rng, 150, deletes=True)
            added = [f"late-{changed['calls']}-{n}" for n in range(5)]
            account.add_tasks(job, added)
            changed["added"] += len(added)
            await deliver(url, account, Faults(duplicate=0.2, reorder=True), seed=changed["calls"])
        return result

    engine = engine_for(function_app, **{workflow.LIST_PAGES: ("activityTrigger", page_then_change)})
    several_pages_a_call = {**job_input(job), "limits": ListingLimits(pages_per_call=2).to_json()}
    instance = await engine.run(workflow.VALIDATE_JOB, several_pages_a_call, "fanout-change")
    assert instance.output["action"] == "validated", instance.output
    assert changed["calls"] >= 3 and instance.output["pages"] == changed["pages"]
    assert sum(instance.output["corrected"].values()) > 0
    await served_as_truth(url, account, job)


async def test_a_call_lists_pages_of_its_slice_in_order_and_hands_on_where_the_next_begins(app, simulator):
    """The real activity: a full first page splits a slice (nothing kept); otherwise up to maxPages
    pages are kept, and the next call goes on from the returned link."""
    function_app, url = app
    account, _ = simulator
    job = "Fanout-Pages"
    new_job(account, job, 2500)
    list_pages = function_app.functions[workflow.LIST_PAGES].entry
    scan = await function_app.functions[workflow.BEGIN].entry(job_input(job))
    whole = {"low": scan["createdTicks"], "high": scan["scanStartedTicks"], "next": None, "pages": 0}
    store = get_store(get_settings())

    async def kept():
        listings = {}
        for shard in range(scan["partitions"]):
            listings.update(await store.listed_in_shard(job.lower(), scan["scanId"], shard))
        return listings

    assert await list_pages({**scan, "maySplit": True, "maxPages": 2, "slice": whole}) == {"split": True}
    assert await kept() == {}
    first = await list_pages({**scan, "maySplit": False, "maxPages": 2, "slice": whole})
    assert (first["pages"], first["listed"]) == (2, 2000) and first["next"]
    rest = await list_pages(
        {**scan, "maySplit": False, "maxPages": 2, "slice": {**whole, "next": first["next"], "pages": 2}}
    )
    assert (rest["pages"], rest["listed"], rest["next"]) == (1, 500, None)
    assert first["created"][1] <= rest["created"][0]  # in creation order
    assert sorted(await kept()) == [f"t{n:05d}" for n in range(2500)]


async def test_two_tasks_created_in_one_tick_at_a_slice_boundary_are_listed_once(app, simulator):
    """Slices are half-open creation-time ranges: a tick belongs to the slice it starts."""
    function_app, url = app
    account, _ = simulator
    job = "Fanout-Tick"
    new_job(account, job, 30, width=1)
    tasks = account.job(job).tasks
    boundary = tasks["t15"].creation_ticks
    tasks["t14"].creation_ticks = boundary  # t14 and t15 now share the boundary's tick
    entries = function_app.functions
    scan = await entries[workflow.BEGIN].entry(job_input(job))
    low, high = scan["createdTicks"], scan["scanStartedTicks"]
    listed = 0
    for piece in ({"low": low, "high": boundary}, {"low": boundary, "high": high}):
        next_link, pages = None, 0
        while True:
            result = await entries[workflow.LIST_PAGES].entry(
                {**scan, "maySplit": False, "maxPages": 1, "slice": {**piece, "next": next_link, "pages": pages}}
            )
            listed, next_link, pages = listed + result["listed"], result["next"], pages + result["pages"]
            if not next_link:
                break
    listings = {}  # what the sweeps will read
    store = get_store(get_settings())
    for shard in range(scan["partitions"]):
        listings.update(await store.listed_in_shard(job.lower(), scan["scanId"], shard))
    assert listed == 30 and sorted(listings) == sorted(f"t{n}" for n in range(30))
    assert creation_filter(low, boundary).endswith(f"creationTime lt DateTime'{ticks_to_iso(boundary)}'")


async def test_a_job_with_no_tasks_validates_to_zero(app, simulator):
    function_app, url = app
    account, _ = simulator
    job = "Fanout-Empty"
    account.create_job(job)
    instance = await function_app.durable_engine().run(workflow.VALIDATE_JOB, job_input(job), "fanout-empty")
    assert instance.output["action"] == "validated" and instance.output["tasksListed"] == 0, instance.output
    counts = (await served(url, job))["taskCounts"]
    assert counts == {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}


async def test_a_job_deleted_mid_scan_is_removed_and_no_longer_served(app, simulator):
    function_app, url = app
    account, _ = simulator
    job = "Fanout-Gone"
    new_job(account, job, 3000)
    await deliver(url, account)
    real_page = function_app.functions[workflow.LIST_PAGES].entry

    async def page_then_delete(scan):
        result = await real_page(scan)
        if job.lower() in account.jobs:
            account.delete_job(job)
        return result

    engine = engine_for(function_app, **{workflow.LIST_PAGES: ("activityTrigger", page_then_delete)})
    instance = await engine.run(workflow.VALIDATE_JOB, job_input(job), "fanout-gone")
    assert instance.output["action"] == "removed" and instance.output["reason"] == "JobNotFound", instance.output
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/jobs/{job}/taskcounts", headers={"x-functions-key": READ_KEY}) as response:
            assert response.status == 404


async def test_throttling_and_server_errors_during_the_fan_out_are_waited_out(app, simulator):
    function_app, url = app
    account, sim_url = simulator
    job = "Fanout-Throttled"
    new_job(account, job, 3000)
    account.step(job, random.Random(2), 2000, deletes=False)
    await deliver(url, account, Faults(drop=0.2), seed=2)
    await simulator_control(sim_url, "faults", {"throttle": 0.25, "serverError": 0.1, "retryAfter": 1, "seed": 7})
    try:
        instance = await function_app.durable_engine().run(workflow.VALIDATE_JOB, job_input(job), "fanout-429")
    finally:
        injected = (await simulator_control(sim_url, "faults", {"throttle": 0, "serverError": 0}))["injected"]
    assert injected > 0
    assert instance.output["action"] == "validated", instance.output
    await served_as_truth(url, account, job)


async def test_the_next_pass_lists_only_where_the_tasks_were_created(app, simulator):
    """A job validated long after its tasks were added: the second pass slices the span the first saw."""
    function_app, url = app
    account, sim_url = simulator
    job = "Fanout-Again"
    new_job(account, job, 12_000)
    hour = 3600 * 10**7
    account.job(job).creation_ticks -= hour  # created an hour ago, its tasks within a second of it
    for task in account.job(job).tasks.values():
        task.creation_ticks -= hour
    await deliver(url, account)

    async def list_calls():
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{sim_url}/control/calls") as response:
                return (await response.json()).get("/jobs/{jobId}/tasks", 0)

    passes = []
    for attempt in range(2):
        before = await list_calls()
        instance = await function_app.durable_engine().run(workflow.VALIDATE_JOB, job_input(job), f"again-{attempt}")
        assert instance.output["action"] == "validated" and instance.output["tasksListed"] == 12_000, instance.output
        passes.append(await list_calls() - before)
    # the first pass pays for an hour of empty time and for splitting its way to the tasks; the second
    # cuts only their span (the tasks are not spread evenly in it, so some slices still page on or split)
    assert passes[1] < passes[0] and passes[1] <= 3 * 12, passes
