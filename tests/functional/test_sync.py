"""The delta sync against the Batch simulator (real SDK pipeline over HTTP, SharedKey) and Azurite:
tasks added with no event appear, cost stays one List Tasks call per quiet job, long listings
resume, every job is reached, one run at a time, throttling is waited out."""

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest

from shared import sync
from shared.batch import BatchReader
from shared.store import CountsStore
from tests.conftest import make_settings
from tools.azurite import free_port
from tools.batchsim.model import BatchAccount
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY, serve


@pytest.fixture
async def world(azurite):
    """A simulator of its own (sync lists every unfinished job), a store, a reader, and settings."""
    account, port = BatchAccount(), free_port()
    runner = await serve(account, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"

    def make(**overrides):
        return make_settings(
            azurite,
            BATCH_ACCOUNT_URL=url,
            BATCH_ACCOUNT_NAME=DEFAULT_ACCOUNT,
            BATCH_ACCOUNT_KEY=DEFAULT_KEY,
            **overrides,
        )

    opened = []

    def open_world(**overrides):
        settings = make(**overrides)
        store, batch = CountsStore.from_settings(settings), BatchReader.for_account(settings.accounts.default, settings)
        opened.append((store, batch))
        return settings, store, batch

    yield account, url, open_world
    for store, batch in opened:
        await store.close()
        await batch.close()
    await runner.cleanup()


def now():
    return datetime.now(UTC)


async def counts(store, job_id):
    found = await store.get_job_counts(job_id.lower())
    return None if found is None else found.tasks.as_dict()


async def control(url, method, path, body=None):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{url}/control/{path}", json=body) as response:
            response.raise_for_status()
            return await response.json(content_type=None)


async def calls(url):
    return await control(url, "GET", "calls")


LIST_TASKS = "/jobs/{jobId}/tasks"


async def test_tasks_added_with_no_event_appear_and_a_quiet_job_costs_one_call(world):
    account, url, open_world = world
    settings, store, batch = open_world(TASK_SYNC_OVERLAP_SECONDS=0)  # the overlap would re-list these seconds
    account.create_job("Added-Only")
    account.add_tasks("Added-Only", [f"t{n}" for n in range(1500)], publish=False)
    report = await sync.run(store, batch, settings, now())
    assert report.jobs_reached == 1 and report.pages == 2 and report.applied == 1500
    assert await counts(store, "Added-Only") == account.task_counts("Added-Only")["taskCounts"]

    before = (await calls(url)).get(LIST_TASKS, 0)
    quiet = await sync.run(store, batch, settings, now())
    assert (await calls(url))[LIST_TASKS] - before == 1 and quiet.applied == 0  # nothing changed: one call

    account.start("Added-Only", "t7", publish=False)
    account.complete("Added-Only", "t8", None, publish=False)  # failed before it ran
    account.add_tasks("Added-Only", ["late-1", "late-2"], publish=False)
    changed = await sync.run(store, batch, settings, now())
    assert changed.applied == 4 and changed.pages == 1
    assert await counts(store, "Added-Only") == account.task_counts("Added-Only")["taskCounts"]


async def test_a_listing_longer_than_the_page_budget_resumes_next_run(world):
    account, _, open_world = world
    settings, store, batch = open_world(TASK_SYNC_MAX_PAGES=1, TASK_SYNC_OVERLAP_SECONDS=0)
    account.create_job("Long")
    account.add_tasks("Long", [f"t{n:05d}" for n in range(2500)], publish=False)
    first = await sync.run(store, batch, settings, now())
    assert first.resumed_later == ["Long"] and (await counts(store, "Long"))["active"] == 1000
    account.add_tasks("Long", ["added-while-resuming"], publish=False)  # after the listing began
    second = await sync.run(store, batch, settings, now())
    third = await sync.run(store, batch, settings, now())
    assert second.resumed_later == ["Long"] and third.resumed_later == []
    fourth = await sync.run(store, batch, settings, now())  # the change since the listing began
    assert fourth.resumed_later == [] and fourth.pages == 1
    assert await counts(store, "Long") == account.task_counts("Long")["taskCounts"]


async def test_every_job_is_reached_within_its_share_of_runs(world):
    account, _, open_world = world
    settings, store, batch = open_world(TASK_SYNC_MAX_JOBS=2)
    names = [f"Fair-{n}" for n in range(5)]
    for name in names:
        account.create_job(name)
        account.add_tasks(name, ["a", "b"], publish=False)
    reached = [await sync.run(store, batch, settings, now()) for _ in range(3)]
    assert [r.jobs_reached for r in reached] == [2, 2, 2] and reached[0].jobs_waiting == 3
    for name in names:
        assert await counts(store, name) == account.task_counts(name)["taskCounts"], name


async def test_a_completed_job_is_synced_once_more_then_left_alone(world):
    account, url, open_world = world
    settings, store, batch = open_world()
    account.create_job("Finishing")
    account.add_tasks("Finishing", ["x", "y"], publish=False)
    await sync.run(store, batch, settings, now())
    account.start("Finishing", "x", publish=False)
    account.complete("Finishing", "x", 0, publish=False)
    account.job("Finishing").state = "completed"
    last = await sync.run(store, batch, settings, now())
    assert last.jobs_reached == 1 and last.applied == 1
    assert await counts(store, "Finishing") == account.task_counts("Finishing")["taskCounts"]
    assert (await sync.run(store, batch, settings, now())).jobs_reached == 0
    account.delete_job("Finishing")
    account.create_job("Gone")
    await sync.run(store, batch, settings, now())
    account.delete_job("Gone")  # known here, not in Batch any more: marked finished, no error
    gone = await sync.run(store, batch, settings, now())
    assert gone.failed is None and (await sync.run(store, batch, settings, now())).jobs_reached == 0


async def while_one_run_lists(job_id, url, start_run):
    """Start a run and hold its listing of ``job_id`` (the simulator's hold) while a second run
    starts and ends; then let the first go on. Returns both reports."""
    await control(url, "POST", "holds", {"jobId": job_id, "after": 0})
    first = asyncio.create_task(start_run())
    for _ in range(6000):  # until the first run is listing (or 60 s)
        if (await control(url, "GET", f"holds/{job_id}"))["waiting"]:
            break
        assert not first.done(), await first
        await asyncio.sleep(0.01)
    second = await start_run()
    await control(url, "DELETE", f"holds/{job_id}")
    return await first, second


async def test_one_run_at_a_time(world):
    account, url, open_world = world
    settings, store, batch = open_world()
    account.create_job("Leased")
    account.add_tasks("Leased", [f"t{n}" for n in range(3000)], publish=False)
    first, second = await while_one_run_lists("Leased", url, lambda: sync.run(store, batch, settings, now()))
    assert first.skipped is None and second.skipped is not None
    assert (await sync.run(store, batch, settings, now())).skipped is None  # the lease was released


async def test_throttling_is_waited_out_as_retry_after_asks(world):
    account, url, open_world = world
    settings, store, batch = open_world()
    account.create_job("Throttled")
    account.add_tasks("Throttled", [f"t{n}" for n in range(50)], publish=False)
    await control(url, "POST", "faults", {"throttle": 0.5, "retryAfter": 1, "seed": 3})
    try:
        started = time.monotonic()
        report = await sync.run(store, batch, settings, now())
        waited = time.monotonic() - started
    finally:
        injected = (await control(url, "POST", "faults", {"throttle": 0}))["injected"]
    assert injected >= 1 and waited >= injected * 0.9  # each 429 cost the second it asked for
    assert report.failed is None
    assert await counts(store, "Throttled") == account.task_counts("Throttled")["taskCounts"]


async def test_a_job_read_through_the_api_is_watched_and_synced_by_the_watched_run_alone(world):
    """Reading a job's counts marks it watched: the watched run lists what changed in it (and in no
    other job) with no event and no account sync; the mark lapses after WATCH_MINUTES; a job Batch
    deleted stops costing calls."""
    from datetime import timedelta

    from shared import api

    account, url, open_world = world
    settings, store, batch = open_world(WATCH_MINUTES=5)
    for job in ("Watched", "Unwatched"):
        account.create_job(job)
        account.add_tasks(job, [f"t{n}" for n in range(40)], publish=False)
    await sync.run(store, batch, settings, now())  # both known, with a watermark
    started = now()
    reply = await api.get_task_counts(store, api.JobAddress("watched", None), api.Reading.now_for(settings, None))
    assert reply.status == 200
    for job in ("Watched", "Unwatched"):
        for n in range(10):
            account.start(job, f"t{n}", publish=False)  # no event, no log: only a listing shows it
    report = await sync.run_watched(store, batch, settings, now())
    assert report.jobs_reached == 1 and report.applied == 10
    assert await counts(store, "Watched") == account.task_counts("Watched")["taskCounts"]
    assert (await counts(store, "Unwatched"))["running"] == 0  # left to the account's sync

    lapsed = await sync.run_watched(store, batch, settings, started + timedelta(minutes=5, seconds=1))
    assert lapsed.jobs_reached == 0 and not await store.watched_positions(started + timedelta(minutes=5, seconds=1))

    await api.get_task_counts(
        store, api.JobAddress("watched", None), api.Reading.now_for(settings, None)
    )  # read again: watched again
    account.delete_job("Watched")
    gone = await sync.run_watched(store, batch, settings, now())
    assert gone.jobs_reached == 1 and gone.failed is None
    assert (await sync.run_watched(store, batch, settings, now())).jobs_reached == 0  # deleted: no more calls


async def test_watching_costs_one_write_per_job_a_quarter_of_the_window(world):
    from shared import api

    account, url, open_world = world
    settings, store, batch = open_world(WATCH_MINUTES=4)
    account.create_job("Polled")
    await sync.run(store, batch, settings, now())
    writes = []
    mark = store.watches.table.upsert_entity

    async def counted(*args, **kwargs):
        writes.append(args)
        return await mark(*args, **kwargs)

    store.watches.table.upsert_entity = counted
    for _ in range(20):  # a dashboard polling every few seconds
        assert (
            await api.get_task_counts(store, api.JobAddress("polled", None), api.Reading.now_for(settings, None))
        ).status == 200
        assert (
            await api.job_history(store, api.JobAddress("polled", None), {}, api.Reading.now_for(settings, None))
        ).status == 200
    assert len(writes) == 1
    assert [position.job_key for position in await store.watched_positions(now())] == ["polled"]


async def test_a_watched_job_batch_finished_stops_being_listed_and_watched_runs_never_overlap(world):
    from shared import api

    account, url, open_world = world
    settings, store, batch = open_world()
    account.create_job("Ending")
    account.add_tasks("Ending", [f"t{n}" for n in range(3000)], publish=False)
    await sync.run(store, batch, settings, now())
    await api.get_task_counts(store, api.JobAddress("ending", None), api.Reading.now_for(settings, None))
    account.start("Ending", "t1", publish=False)
    first, second = await while_one_run_lists("Ending", url, lambda: sync.run_watched(store, batch, settings, now()))
    assert first.skipped is None and second.skipped and first.applied == 1  # one run at a time
    account.job("Ending").state = "completed"
    await sync.run(store, batch, settings, now())  # the account's sync sees Batch finished it
    before = (await calls(url)).get(LIST_TASKS, 0)
    assert (await sync.run_watched(store, batch, settings, now())).jobs_reached == 0
    assert (await calls(url)).get(LIST_TASKS, 0) == before  # no more calls for it
    assert await counts(store, "Ending") == account.task_counts("Ending")["taskCounts"]


async def test_batchs_own_counts_beside_ours_once_they_disagree_for_a_while_and_validation_looks_sooner(world):
    """A task deleted in Batch shows in no listing: Batch's own count of the watched job differs from
    ours. The watched run keeps Batch's beside ours; the API says so once the disagreement stands
    (60 s), validation is due at once (not after its usual wait), and a later agreement clears it.
    Ours are never replaced."""
    from datetime import timedelta

    from shared import api
    from shared.events import datetime_to_ticks
    from shared.progress import ProgressRules
    from shared.validation import scheduling
    from tests.strategies import BASE_TICKS, observe

    account, url, open_world = world
    settings, store, batch = open_world()
    account.create_job("Hinted")
    account.add_tasks("Hinted", [f"t{n}" for n in range(20)], publish=False)
    await sync.run(store, batch, settings, now())
    t0 = now()
    await store.mark_validation("hinted", "validated", None, t0, {})  # nothing changed since
    reading = lambda at: api.Reading(ProgressRules.from_settings(settings), at, None, 300.0)  # noqa: E731
    await api.get_task_counts(store, api.JobAddress("hinted", None), reading(t0))  # watched
    account.delete_task("Hinted", "t3", publish=False)
    await sync.run_watched(store, batch, settings, t0)  # ours changed a moment ago (the sync): Batch's lag explains it
    assert (await store.get_job_counts("hinted")).job.batch_reported is None
    t1 = t0 + timedelta(seconds=sync.BATCH_COUNTS_LAG_SECONDS + sync.HINT_SECONDS)
    await sync.run_watched(store, batch, settings, t1)  # still differs, ours still: recorded
    job = await store.get_job_counts("hinted")
    assert job.tasks.active == 20 and job.job.batch_reported.task_counts["active"] == 19  # ours kept
    assert (
        "batchReported"
        not in (
            await api.get_task_counts(store, api.JobAddress("hinted", None), reading(t1 + timedelta(seconds=30)))
        ).body
    )
    assert not scheduling.due(job, t1 + timedelta(seconds=30))

    await sync.run_watched(store, batch, settings, t1 + timedelta(seconds=61))  # still differs: since t1
    standing = await api.get_task_counts(store, api.JobAddress("hinted", None), reading(t1 + timedelta(seconds=61)))
    assert standing.body["batchReported"]["taskCounts"]["active"] == 19 and standing.body["taskCounts"]["active"] == 20
    assert standing.body["batchReported"]["disagreeingSince"].startswith(t1.strftime("%Y-%m-%dT%H:%M:%S"))
    job = await store.get_job_counts("hinted")
    assert scheduling.due(job, t1 + timedelta(seconds=61))  # unchanged since its pass, yet due: Batch disagrees
    await store.mark_validation("hinted", "validated", None, t1 + timedelta(seconds=62), {})
    assert not scheduling.due(await store.get_job_counts("hinted"), t1 + timedelta(seconds=63))  # once per disagreement

    deleted_at = datetime_to_ticks(now()) - BASE_TICKS  # newer than any listing of t3
    await store.apply([observe("Hinted", "t3", None, deleted_at)])  # the delete reaches us (a producer, validation)
    await sync.run_watched(store, batch, settings, t1 + timedelta(seconds=80))
    assert (await store.get_job_counts("hinted")).job.batch_reported is None
    assert (
        "batchReported"
        not in (
            await api.get_task_counts(store, api.JobAddress("hinted", None), reading(t1 + timedelta(seconds=81)))
        ).body
    )


async def test_a_jobs_watermark_is_when_its_own_listing_began_not_when_a_long_run_did(world):
    """A run that began long ago (many jobs, a paced budget) still sets each job's watermark to when
    that job was listed: the next run lists nothing for jobs that did not change since."""
    from datetime import timedelta

    account, url, open_world = world
    settings, store, batch = open_world(TASK_SYNC_OVERLAP_SECONDS=0)
    for job in ("Early", "Late"):
        account.create_job(job)
        account.add_tasks(job, [f"t{n}" for n in range(50)], publish=False)
    long_ago = now() - timedelta(minutes=10)
    first = await sync.run(store, batch, settings, long_ago)
    assert first.tasks_listed == 100
    again = await sync.run(store, batch, settings, now())
    assert again.jobs_reached == 2 and again.tasks_listed == 0
