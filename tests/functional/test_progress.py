"""Progress history, the progress object, ETags and alerts, through the store against Azurite."""

import json
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared import api
from shared.counting import TaskResult, TaskState
from shared.fleet import summarize_jobs
from shared.monitoring import ALERT_PREFIX, record_progress
from shared.progress import ProgressRules
from shared.store import CountsStore
from tests.conftest import make_settings
from tests.strategies import observe

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at_default(job_id: str) -> api.JobAddress:
    """A job of the default account, as /api/jobs/{jobId}/... addresses it."""
    return api.JobAddress(job_id, None)


@asynccontextmanager
async def store_of(azurite, **overrides):
    """A store over fresh tables, with its settings."""
    settings = make_settings(azurite, **overrides)
    store = CountsStore.from_settings(settings)
    try:
        yield store, settings
    finally:
        await store.close()


def reading(settings, now, if_none_match=None) -> api.Reading:
    return api.Reading(ProgressRules.from_settings(settings), now, if_none_match)


async def run_tasks(store, job, tasks, state, tick, result=None):
    await store.apply([observe(job, f"t{n}", state, tick, result) for n in tasks])


async def test_points_rate_eta_and_history(azurite):
    async with store_of(azurite, PROGRESS_WINDOW_MINUTES=10) as (store, settings):
        await run_tasks(store, "Job-P", range(100), TaskState.ACTIVE, 1)
        first = await record_progress(store, settings, T0)
        assert (first.jobs, first.points) == (1, 1)
        assert (await record_progress(store, settings, T0 + timedelta(seconds=30))).points == 0  # unchanged
        await run_tasks(store, "Job-P", range(40), TaskState.COMPLETED, 2, TaskResult.SUCCESS)
        await record_progress(store, settings, T0 + timedelta(minutes=2))
        await run_tasks(store, "Job-P", range(40, 60), TaskState.COMPLETED, 3, TaskResult.FAILURE)
        await record_progress(store, settings, T0 + timedelta(minutes=4))

        now = T0 + timedelta(minutes=4)
        reply = await api.get_task_counts(store, at_default("job-p"), reading(settings, now))
        progress = reply.body["progress"]
        assert reply.status == 200 and reply.body["taskCounts"]["completed"] == 60
        assert progress["completionsPerMinute"] == 15.0  # 60 completions in the job's first 4 minutes
        assert progress["eta"] == "2026-11-25T12:06:40Z"  # 40 left at 15 a minute
        assert progress["failureRatio"] == round(20 / 60, 4) and progress["failing"] is True
        assert progress["stalledSince"] is None

        history = await api.job_history(store, at_default("JOB-P"), {}, reading(settings, now))
        assert [point["completed"] for point in history.body["value"]] == [0, 40, 60]
        assert history.body["value"][0]["at"] == "2026-11-25T12:00:00Z"
        later = await api.job_history(
            store, at_default("job-p"), {"since": "2026-11-25T12:01:00Z"}, reading(settings, now)
        )
        assert [point["completed"] for point in later.body["value"]] == [40, 60]


async def test_etags_answer_304_until_something_changes(azurite):
    async with store_of(azurite) as (store, settings):
        await run_tasks(store, "job-e", range(5), TaskState.RUNNING, 1)
        await record_progress(store, settings, T0)
        await summarize_jobs(store, ProgressRules.from_settings(settings), T0)
        first = await api.get_task_counts(store, at_default("job-e"), reading(settings, T0 + timedelta(seconds=5)))
        etag = first.headers["ETag"]
        again = await api.get_task_counts(
            store, at_default("job-e"), reading(settings, T0 + timedelta(seconds=10), etag)
        )
        assert again.status == 304 and again.body is None and again.headers["ETag"] == etag
        listing = await api.list_jobs(store, {}, "http://x/api/jobs", reading(settings, T0), settings.accounts)
        assert (
            await api.list_jobs(
                store, {}, "http://x/api/jobs", reading(settings, T0, listing.headers["ETag"]), settings.accounts
            )
        ).status == 304
        history = await api.job_history(store, at_default("job-e"), {}, reading(settings, T0))
        assert (
            await api.job_history(store, at_default("job-e"), {}, reading(settings, T0, history.headers["ETag"]))
        ).status == 304

        await run_tasks(store, "job-e", range(2), TaskState.COMPLETED, 2, TaskResult.SUCCESS)
        changed = await api.get_task_counts(
            store, at_default("job-e"), reading(settings, T0 + timedelta(seconds=15), etag)
        )
        assert changed.status == 200 and changed.headers["ETag"] != etag
        await summarize_jobs(store, ProgressRules.from_settings(settings), T0 + timedelta(seconds=15))
        assert (
            await api.list_jobs(
                store, {}, "http://x/api/jobs", reading(settings, T0, listing.headers["ETag"]), settings.accounts
            )
        ).status == 200


async def test_a_stall_is_alerted_once_flagged_in_the_api_and_ends_when_tasks_complete(azurite, caplog):
    caplog.set_level(logging.WARNING, logger="shared.monitoring")
    async with store_of(azurite, STALL_MINUTES=15) as (store, settings):
        await run_tasks(store, "job-s", range(10), TaskState.RUNNING, 1)
        await record_progress(store, settings, T0)
        before = await api.get_task_counts(store, at_default("job-s"), reading(settings, T0 + timedelta(minutes=14)))
        quiet = await record_progress(store, settings, T0 + timedelta(minutes=14))
        assert quiet.alerts == 0 and before.body["progress"]["stalledSince"] is None
        etag = before.headers["ETag"]

        stalled = [await record_progress(store, settings, T0 + timedelta(minutes=m)) for m in (15, 16, 30)]
        assert [run.alerts for run in stalled] == [1, 0, 0]  # once per episode
        flagged = await api.get_task_counts(
            store, at_default("job-s"), reading(settings, T0 + timedelta(minutes=15), etag)
        )
        assert flagged.status == 200 and flagged.body["progress"]["stalledSince"] == "2026-11-25T12:00:00Z"

        [record] = [r for r in caplog.records if r.getMessage().startswith(ALERT_PREFIX)]
        alert = json.loads(record.getMessage()[len(ALERT_PREFIX) :])  # what the Bicep log alert parses
        assert record.levelno == logging.WARNING
        assert alert == {
            "alert": "stalled",
            "jobId": "job-s",
            "since": "2026-11-25T12:00:00Z",
            "active": 0,
            "running": 10,
            "completed": 0,
            "succeeded": 0,
            "failed": 0,
        }

        await run_tasks(store, "job-s", range(1), TaskState.COMPLETED, 2, TaskResult.SUCCESS)
        assert (await record_progress(store, settings, T0 + timedelta(minutes=31))).alerts == 0
        moving = await api.get_task_counts(store, at_default("job-s"), reading(settings, T0 + timedelta(minutes=31)))
        assert moving.body["progress"]["stalledSince"] is None
        again = await record_progress(store, settings, T0 + timedelta(minutes=46))  # a second stall
        assert again.alerts == 1


async def test_history_is_thinned_to_its_bound_and_removed_with_the_job(azurite):
    async with store_of(azurite, PROGRESS_MAX_POINTS=10) as (store, settings):
        for minute in range(25):
            await run_tasks(store, "job-t", [minute], TaskState.ACTIVE, 1)
            await record_progress(store, settings, T0 + timedelta(minutes=minute))
        history = await api.job_history(store, at_default("job-t"), {}, reading(settings, T0 + timedelta(minutes=30)))
        points = history.body["value"]
        assert len(points) <= 10
        assert points[0]["active"] == 1 and points[-1]["active"] == 25  # still spans the job
        await store.remove_job("job-t")
        assert await store.progress_since("job-t", None) == []


async def test_bad_history_requests_get_batch_style_errors(azurite):
    async with store_of(azurite) as (store, settings):
        await run_tasks(store, "job-b", range(1), TaskState.ACTIVE, 1)
        for since in ("yesterday", "2026-11-25T12:00:00"):  # not a time; no time zone
            reply = await api.job_history(store, at_default("job-b"), {"since": since}, reading(settings, T0))
            assert reply.status == 400 and reply.body["code"] == "InvalidQueryParameterValue"
            assert {"key": "QueryParameterName", "value": "since"} in reply.body["values"]
        assert (await api.job_history(store, at_default("no-such-job"), {}, reading(settings, T0))).status == 404
        assert api.address_of(settings.accounts, {"jobId": "bad/id"}).status == 400


async def test_polls_are_answered_from_a_recent_read_and_see_a_change_within_its_age(azurite):
    """COUNTS_MAX_AGE_MS: a poll right after a change may show the counts before it; a job polled on
    sees the change within the age (plus one read), never waiting for storage itself. Time is the
    test's clock: the machine's speed decides nothing."""
    import asyncio

    clock = [0.0]
    settings = make_settings(azurite, COUNTS_MAX_AGE_MS=300)
    store = CountsStore.from_settings(settings, clock=lambda: clock[0])
    try:
        await run_tasks(store, "Job-R", range(3), TaskState.ACTIVE, 1)
        first = await api.get_task_counts(store, at_default("job-r"), reading(settings, T0))
        await run_tasks(store, "Job-R", range(3), TaskState.RUNNING, 2)
        clock[0] = 0.1  # under half the age: answered from the read before the change, no read started
        assert (await api.get_task_counts(store, at_default("job-r"), reading(settings, T0))).body == first.body
        clock[0] = 0.2  # past half the age: still answered at once, and one read starts behind the poll
        assert (await api.get_task_counts(store, at_default("job-r"), reading(settings, T0))).body == first.body
        for _ in range(6000):  # within the age, the poll sees the change once that read is done
            reply = await api.get_task_counts(store, at_default("job-r"), reading(settings, T0))
            if reply.body["taskCounts"]["running"] == 3:
                break
            await asyncio.sleep(0.01)
        assert reply.body["taskCounts"] == {**first.body["taskCounts"], "active": 0, "running": 3}
    finally:
        await store.close()


async def test_a_run_reads_the_jobs_that_changed_and_the_running_ones_not_the_finished_ones(azurite):
    """The cost of a run follows what changes: after the first run (every job, once), a finished job
    nothing touched is not read; one that changes is read once; a running one every run (stalls)."""
    wall = [T0]
    settings = make_settings(azurite)
    store = CountsStore.from_settings(settings, utc_clock=lambda: wall[0])
    try:
        for job in ("Done-1", "Done-2", "Done-3"):
            await run_tasks(store, job, range(2), TaskState.COMPLETED, 1, TaskResult.SUCCESS)
        await run_tasks(store, "Busy", range(2), TaskState.RUNNING, 1)

        async def run_at(seconds: int) -> int:
            wall[0] = T0 + timedelta(seconds=seconds)
            return (await record_progress(store, settings, wall[0])).jobs

        assert await run_at(30) == 4  # the first run reads every job
        assert await run_at(60) == 1  # only the running one
        assert await run_at(90) == 1
        await run_tasks(store, "Done-2", [7], TaskState.ACTIVE, 2)  # a finished job gets a task
        assert await run_at(120) == 2
        assert await run_at(150) == 2  # Done-2 has a task left: now it is a running one too
        await run_tasks(store, "Done-2", [7], TaskState.COMPLETED, 3, TaskResult.SUCCESS)
        await run_tasks(store, "Busy", range(2), TaskState.COMPLETED, 3, TaskResult.SUCCESS)
        assert await run_at(180) == 2  # both finished: read once more, then
        assert await run_at(240) == 0  # nothing to read
        history = await api.job_history(store, at_default("Done-2"), {}, reading(settings, wall[0]))
        points = [(point["active"], point["completed"]) for point in history.body["value"]]
        assert points == [(0, 2), (1, 2), (0, 3)]  # each change recorded, none missed
    finally:
        await store.close()


async def test_an_upgraded_deployments_history_is_moved_whole_and_read_all_along(azurite, monkeypatch):
    """Deployments before kept every job's points in one table, ``{prefix}history``: the first runs
    after the upgrade move it, whole jobs at a time, and record nothing meanwhile; every read sees a
    job's whole history before, during and after the move; a job removed meanwhile leaves neither."""
    from shared import monitoring
    from shared.counting import Counts
    from shared.progress import Episodes, Point
    from shared.store.codec.history import head_row, point_row
    from shared.store.tables import upsert_all

    monkeypatch.setattr(monitoring, "LEGACY_HISTORY_ROWS_PER_RUN", 100)
    async with store_of(azurite, PROGRESS_MAX_POINTS=500) as (store, settings):
        for job, tasks in (("job-a-long", 150), ("job-failing", 3), ("job-gone", 1)):
            await run_tasks(store, job, range(tasks), TaskState.ACTIVE, 1)
        # As the code before wrote them: job-a-long's newest point is its counts (150 active) today.
        held = {
            "job-a-long": [Point(T0 + timedelta(minutes=n), Counts(active=n + 1), T0) for n in range(150)],
            "job-failing": [Point(T0 + timedelta(minutes=n), Counts(active=1 + n), T0) for n in range(2)],
            "job-gone": [Point(T0, Counts(active=1), T0)],
        }
        failing = Episodes(failing_since=T0)
        legacy = store.history.legacy
        await legacy.create_table()
        for job, points in held.items():
            episodes = failing if job == "job-failing" else Episodes()
            rows = [head_row(job, episodes, len(points)), *(point_row(job, point) for point in points)]
            await upsert_all(legacy, rows)

        async def read_back(job: str) -> tuple[Episodes, list[Point]]:
            episodes, count, _ = await store.recent_progress(job, T0)
            assert count == len(held[job])
            return episodes, await store.progress_since(job, None)

        assert await read_back("job-a-long") == (Episodes(), held["job-a-long"])
        later = T0 + timedelta(days=1)
        assert await record_progress(store, settings, later) == monitoring.ProgressRun(0, 0, 0, 0)
        moved = [row async for row in store.history.table_of("job-a-long").list_entities()]
        assert len(moved) == 151  # job-a-long moved (151 rows: past the 100 a run; keys come in order).
        assert [row async for row in legacy.list_entities() if row["PartitionKey"] == "job-a-long"] == []
        assert await read_back("job-a-long") == (Episodes(), held["job-a-long"])
        assert await read_back("job-failing") == (failing, held["job-failing"])  # ...job-failing not yet
        await store.remove_job("job-gone")
        assert await store.progress_since("job-gone", None) == []

        run = await record_progress(store, settings, later)  # the rest moved, then recorded
        assert (run.jobs, run.points) == (2, 1)  # job-failing's counts (3 active) differ from its newest point
        with pytest.raises(ResourceNotFoundError):  # the legacy table is gone
            [row async for row in legacy.list_entities()]
        assert (await read_back("job-a-long"))[1] == held["job-a-long"]  # (a stall alerted since)
        points = await store.progress_since("job-failing", None)
        assert points[:-1] == held["job-failing"] and points[-1].counts == Counts(active=3)
    fresh = CountsStore.from_settings(settings)  # another process: learns the legacy table is gone
    try:
        assert await fresh.progress_since("job-a-long", None) == held["job-a-long"]
    finally:
        await fresh.close()
