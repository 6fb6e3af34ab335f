"""The jobs list and totals over job summaries (shared.fleet, shared.store.summaries) against Azurite:
pages by last change, filters, paging while jobs come and go, totals that match the jobs, two
accounts with one job id kept apart, a run cut short, the bad inputs."""

from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from shared import api, fleet
from shared.accounts import Accounts, BatchAccount
from shared.counting import Counts, TaskResult, TaskState, TaskStatus
from shared.errors import StoreUnavailableError
from shared.monitoring import record_progress
from shared.progress import ProgressRules
from shared.store import CountsStore, Observation
from shared.store.codec.summaries import ListPosition, encode_position
from shared.store.summaries import JobSummaries
from shared.validation.activities import Deps
from shared.validation.scheduling import jobs_to_plan
from tests.conftest import make_settings
from tests.strategies import BASE_TICKS

ACCOUNTS = Accounts((BatchAccount("main", url="http://main.invalid"), BatchAccount("teamb", url="http://b.invalid")))


@asynccontextmanager
async def fleet_store(azurite, **overrides):
    settings = replace(make_settings(azurite, **overrides), accounts=ACCOUNTS)
    store = CountsStore.from_settings(settings)
    try:
        yield store, settings
    finally:
        await store.close()


async def summarize(store, settings, now=None):
    return await fleet.summarize_jobs(store, ProgressRules.from_settings(settings), now or datetime.now(UTC))


async def run(store, job, tasks, state, tick, result=None, account=None):
    await store.apply(
        [Observation(job, f"t{n}", TaskStatus.observed(BASE_TICKS + tick, 0, state, result, 1), account) for n in tasks]
    )


def reading(settings, etag=None):
    return api.Reading(ProgressRules.from_settings(settings), datetime.now(UTC), etag)


async def listed(store, settings, **query):
    """Every page of the list with this query: (items, pages)."""
    items, pages, token = [], 0, None
    while True:
        page = await api.list_jobs(
            store,
            {**query, **({"$skiptoken": token} if token else {})},
            "http://x/api/jobs",
            reading(settings),
            ACCOUNTS,
        )
        assert page.status == 200, page.body
        items += page.body["value"]
        pages += 1
        next_link = page.body.get("odata.nextLink")
        if not next_link:
            return items, pages
        token = next_link.split("$skiptoken=")[1]


def names(items):
    return [(item["account"], item["id"]) for item in items]


async def test_the_list_is_newest_change_first_with_filters_and_two_accounts_kept_apart(azurite):
    async with fleet_store(azurite) as (store, settings):
        await run(store, "Render", range(4), TaskState.RUNNING, 1)
        await run(store, "Render", range(2), TaskState.ACTIVE, 1, account="teamb")  # one id, two accounts
        await run(store, "Done", range(3), TaskState.COMPLETED, 1, TaskResult.SUCCESS)
        await run(store, "render-2", range(1), TaskState.ACTIVE, 1)
        assert (await summarize(store, settings)).summarized == 4

        items, _ = await listed(store, settings)
        assert names(items) == [("main", "render-2"), ("main", "Done"), ("teamb", "Render"), ("main", "Render")]
        by_name = {(item["account"], item["id"]): item for item in items}
        assert by_name[("main", "Render")]["taskCounts"]["running"] == 4
        assert by_name[("teamb", "Render")]["taskCounts"]["active"] == 2  # never merged with main's
        assert by_name[("main", "Done")]["progress"]["eta"] is None

        assert names((await listed(store, settings, state="finished"))[0]) == [("main", "Done")]
        assert names((await listed(store, settings, state="active", account="teamb"))[0]) == [("teamb", "Render")]
        assert names((await listed(store, settings, account="main"))[0]) == [
            ("main", "render-2"),
            ("main", "Done"),
            ("main", "Render"),
        ]
        by_id = names((await listed(store, settings, prefix="REND"))[0])  # by id, then account
        assert by_id == [("main", "Render"), ("teamb", "Render"), ("main", "render-2")]
        assert names((await listed(store, settings, prefix="rend", account="teamb"))[0]) == [("teamb", "Render")]
        assert (await listed(store, settings, alert="any"))[0] == []

        # A change moves the job to the front once summarized.
        await run(store, "Render", range(4), TaskState.COMPLETED, 2, TaskResult.SUCCESS)
        await summarize(store, settings)
        items, _ = await listed(store, settings)
        assert names(items)[0] == ("main", "Render") and items[0]["taskCounts"]["completed"] == 4
        assert len(items) == 4


async def test_stalled_and_failing_jobs_are_in_the_alert_filter(azurite):
    async with fleet_store(azurite, STALL_MINUTES=15) as (store, settings):
        start = datetime.now(UTC)
        await run(store, "stuck", range(3), TaskState.RUNNING, 1)
        await run(store, "bad", range(20), TaskState.RUNNING, 1)
        await record_progress(store, settings, start)
        await run(store, "bad", range(20), TaskState.COMPLETED, 2, TaskResult.FAILURE)
        later = start + timedelta(minutes=16)
        await record_progress(store, settings, later)  # the stall begins: its mark is the change
        await summarize(store, settings, later)
        stalled, _ = await listed(store, settings, alert="stalled")
        failing, _ = await listed(store, settings, alert="failing")
        assert names(stalled) == [("main", "stuck")] and stalled[0]["progress"]["stalledSince"] is not None
        assert names(failing) == [("main", "bad")]
        assert sorted(names((await listed(store, settings, alert="any"))[0])) == [("main", "bad"), ("main", "stuck")]
        assert names((await listed(store, settings, alert="any", prefix="stu"))[0]) == [("main", "stuck")]
        assert names((await listed(store, settings, alert="failing", prefix="stu"))[0]) == []
        totals = (await api.job_totals(store, {}, "http://x/api/totals", reading(settings), ACCOUNTS)).body["fleet"]
        assert (totals["stalledJobs"], totals["failingJobs"], totals["jobs"]) == (1, 1, 2)


async def test_paging_while_jobs_are_added_changed_and_removed_shows_each_steady_job_once(azurite):
    async with fleet_store(azurite) as (store, settings):
        for n in range(30):
            await run(store, f"job-{n:02d}", range(2), TaskState.ACTIVE, 1)
        await summarize(store, settings)
        seen, token, turn = [], None, 0
        changed, removed = set(), set()
        while True:
            query = {"maxresults": "4", **({"$skiptoken": token} if token else {})}
            page = await api.list_jobs(store, query, "http://x/api/jobs", reading(settings), ACCOUNTS)
            seen += [item["id"] for item in page.body["value"]]
            turn += 1
            # Between pages: a new job, a change to a job not yet seen, a removal.
            await run(store, f"new-{turn}", range(1), TaskState.ACTIVE, 1)
            unseen = sorted({f"job-{n:02d}" for n in range(30)} - set(seen) - changed - removed)
            if len(unseen) > 2:
                await run(store, unseen[0], range(1), TaskState.RUNNING, 2)
                changed.add(unseen[0])
                await store.remove_job(unseen[-1].lower())
                removed.add(unseen[-1])
            await summarize(store, settings)
            if "odata.nextLink" not in page.body:
                break
            token = page.body["odata.nextLink"].split("$skiptoken=")[1]
        assert len(seen) == len(set(seen)), seen  # nothing twice
        steady = {f"job-{n:02d}" for n in range(30)} - changed - removed
        assert steady <= set(seen)  # every job that stayed as it was, once
        assert not (removed & set(seen[len(seen) - 4 :]))  # removed jobs are gone from later pages


@given(
    plan=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from([None, "teamb"]), st.integers(0, 3)),
        min_size=1,
        max_size=12,
    )
)
@hyp_settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_totals_are_the_sum_of_the_jobs_after_any_changes_and_removals(azurite, plan):
    async with fleet_store(azurite) as (store, settings):
        for step, (job, account, action) in enumerate(plan):
            key = job if account is None else f"{account}~{job}"
            if action == 3:
                await store.remove_job(key)
            else:
                state = [TaskState.ACTIVE, TaskState.RUNNING, TaskState.COMPLETED][action]
                result = TaskResult.FAILURE if state is TaskState.COMPLETED else None
                await run(store, job, range(action + 1), state, step + 1, result, account)
            if step % 3 == 2:
                await summarize(store, settings)
        await summarize(store, settings)
        expected: dict = {}
        for job in "abcd":
            for account in (None, "teamb"):
                counts = await store.get_job_counts(job if account is None else f"{account}~{job}")
                if counts is not None:
                    expected.setdefault(account, []).append(counts.tasks)
        body = (await api.job_totals(store, {}, "http://x/api/totals", reading(settings), ACCOUNTS)).body
        for entry in body["accounts"]:
            jobs = expected.get(None if entry["account"] == "main" else entry["account"], [])
            assert entry["jobs"] == len(jobs)
            assert entry["taskCounts"] == sum(jobs, Counts()).as_dict()
            assert entry["activeJobs"] == sum(1 for tasks in jobs if tasks.active + tasks.running)
        items, _ = await listed(store, settings)
        assert len(items) == sum(len(jobs) for jobs in expected.values())


async def test_a_run_cut_short_after_its_commit_leaves_nothing_behind_once_run_again(azurite, monkeypatch):
    async with fleet_store(azurite) as (store, settings):
        await run(store, "cut", range(2), TaskState.ACTIVE, 1)
        await summarize(store, settings)
        await run(store, "cut", range(2), TaskState.COMPLETED, 2, TaskResult.SUCCESS)
        original = JobSummaries._move_list_rows

        async def crash(self, moves):
            raise ConnectionError("the process stopped here")

        monkeypatch.setattr(JobSummaries, "_move_list_rows", crash)
        with pytest.raises(ConnectionError):
            await summarize(store, settings)
        monkeypatch.setattr(JobSummaries, "_move_list_rows", original)
        await run(store, "cut", range(1), TaskState.RUNNING, 3)  # and it changes again before the next run
        await summarize(store, settings)
        items, _ = await listed(store, settings)
        assert names(items) == [("main", "cut")] and items[0]["taskCounts"]["running"] == 1
        assert names((await listed(store, settings, state="finished"))[0]) == []
        assert names((await listed(store, settings, state="active"))[0]) == [("main", "cut")]
        assert names((await listed(store, settings, account="main"))[0]) == [("main", "cut")]  # no leftover anywhere


async def test_an_upgraded_deployment_summarizes_every_job_over_a_few_runs(azurite, monkeypatch):
    monkeypatch.setattr(fleet, "BACKFILL_PER_RUN", 3)
    async with fleet_store(azurite) as (store, settings):
        for n in range(7):
            await run(store, f"old-{n}", range(1), TaskState.ACTIVE, 1)
        hour_later = datetime.now(UTC) + timedelta(hours=1)  # they changed long before the first run
        runs = [await summarize(store, settings, hour_later) for _ in range(3)]
        assert [r.backfilled for r in runs] == [3, 3, 1] and runs[-1].backfill_done
        assert len((await listed(store, settings))[0]) == 7


@pytest.mark.parametrize(
    ("query", "status", "code", "parameter"),
    [
        ({"state": "running"}, 400, "InvalidQueryParameterValue", "state"),
        ({"alert": "loud"}, 400, "InvalidQueryParameterValue", "alert"),
        ({"prefix": "a/b"}, 400, "InvalidQueryParameterValue", "prefix"),
        ({"account": "No Such"}, 400, "InvalidQueryParameterValue", "account"),
        ({"account": "nosuch"}, 404, "AccountNotFound", None),
        ({"$skiptoken": "bm90IGEgdG9rZW4"}, 400, "InvalidQueryParameterValue", "$skiptoken"),
        ({"$skiptoken": encode_position(ListPosition(hour=5))}, 200, None, None),  # well-formed, nothing there
        (
            {"prefix": "a", "$skiptoken": encode_position(ListPosition(hour=5))},
            400,
            "InvalidQueryParameterValue",
            "$skiptoken",
        ),
        ({"$skiptoken": encode_position(ListPosition(job_id="a"))}, 400, "InvalidQueryParameterValue", "$skiptoken"),
    ],
)
async def test_bad_filters_and_tokens_get_batch_style_errors(azurite, query, status, code, parameter):
    async with fleet_store(azurite) as (store, settings):
        reply = await api.list_jobs(store, query, "http://x/api/jobs", reading(settings), ACCOUNTS)
        assert reply.status == status
        if code:
            assert reply.body["code"] == code
        if parameter:
            assert {"key": "QueryParameterName", "value": parameter} in reply.body["values"]


async def test_validation_plans_from_the_summaries_while_they_are_current_and_from_the_counts_when_not(azurite):
    """A scheduled pass reads every job's counts from the summaries (a query per 1,000 jobs) while
    SummarizeJobs keeps up; when it has stopped, from each job's counter rows, so validation never
    depends on it."""
    async with fleet_store(azurite) as (store, settings):
        await run(store, "planned", range(3), TaskState.RUNNING, 1)
        await summarize(store, settings)
        await run(store, "planned", range(3), TaskState.COMPLETED, 2, TaskResult.SUCCESS)  # not summarized yet

        async def planned(now):
            deps = Deps(store, lambda account: None, settings, now)
            return {job.job.job_id: job.tasks async for job in jobs_to_plan(deps)}

        from_summaries = await planned(datetime.now(UTC))
        assert from_summaries["planned"] == Counts(running=3)  # as summarized
        stopped = await planned(datetime.now(UTC) + timedelta(minutes=10))  # the summarizer 10 min behind
        assert stopped["planned"] == Counts(completed=3, succeeded=3)


async def test_a_bucket_deleted_under_the_summarizer_is_made_again(azurite):
    """Another instance emptied and deleted a bucket's table this process still knows: the run that
    meets it fails (the sender's retry), and the next one makes it again; nothing is lost."""
    async with fleet_store(azurite) as (store, settings):
        await run(store, "rebuilt", range(2), TaskState.RUNNING, 1)
        await summarize(store, settings)
        buckets = [
            table.name
            async for table in store._service.list_tables()
            if table.name.startswith(f"{settings.table_prefix}d")
        ]
        assert buckets
        for name in buckets:
            await store._service.delete_table(name)
        await run(store, "rebuilt", range(2), TaskState.COMPLETED, 2, TaskResult.SUCCESS)
        with pytest.raises(StoreUnavailableError):  # the timer's run fails; its cursor stays
            await summarize(store, settings)
        await summarize(store, settings)
        items, _ = await listed(store, settings)
        assert names(items) == [("main", "rebuilt")] and items[0]["taskCounts"]["succeeded"] == 2
        assert names((await listed(store, settings, state="finished"))[0]) == [("main", "rebuilt")]
