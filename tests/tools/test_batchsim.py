"""The Batch simulator through the real azure-batch SDK over HTTP (SharedKey-signed)."""

import asyncio
import random

import aiohttp
import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tools.azurite import free_port
from tools.batchsim.model import BatchAccount
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY, serve


@pytest.fixture
async def simulator():
    account = BatchAccount()
    port = free_port()
    runner = await serve(account, "127.0.0.1", port)
    yield account, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def client(url, key=DEFAULT_KEY, name=DEFAULT_ACCOUNT):
    return BatchClient(url, AzureNamedKeyCredential(name, key))


def seeded_job(account, job_id="Sim-Job", tasks=250):
    account.create_job(job_id)
    account.add_tasks(job_id, [f"task-{n:04d}" for n in range(tasks)])
    rng = random.Random(7)
    for _ in range(3):
        account.step(job_id, rng, tasks)
    return account.task_counts(job_id)["taskCounts"]


async def test_list_tasks_pages_through_every_task_with_filters_and_select(simulator):
    account, url = simulator
    truth = seeded_job(account)
    sdk = client(url)

    def listing(**kwargs):
        return list(sdk.list_tasks("sim-job", max_results=40, **kwargs))

    every = await asyncio.to_thread(listing)
    assert len(every) == sum(truth[k] for k in ("active", "running", "completed"))
    assert [t.id for t in every] == sorted(t.id for t in every)
    completed_ok = await asyncio.to_thread(listing, filter="state eq 'completed' and executionInfo/result eq 'success'")
    assert len(completed_ok) == truth["succeeded"]
    assert all(t.state == "completed" and t.execution_info.result == "success" for t in completed_ok)
    running = await asyncio.to_thread(
        listing, filter="state eq 'running' or state eq 'preparing'", select=["id", "state"]
    )
    assert len(running) == truth["running"]
    assert all(t.command_line is None and t.state in ("running", "preparing") for t in running)


async def test_a_page_position_can_be_resumed_from_its_next_link(simulator):
    account, url = simulator
    seeded_job(account, tasks=120)

    def first_page_then_resume():
        pages = client(url).list_tasks("sim-job", max_results=50, filter="id ge 'task-0010'").by_page()
        first = list(next(pages))
        token = pages.continuation_token
        rest = [
            t
            for page in client(url)
            .list_tasks("sim-job", max_results=50, filter="id ge 'task-0010'")
            .by_page(continuation_token=token)
            for t in page
        ]
        return first, rest

    first, rest = await asyncio.to_thread(first_page_then_resume)
    assert len(first) == 50 and first[0].id == "task-0010"
    assert [t.id for t in first + rest] == [
        f"task-{n:04d}" for n in range(10, 120) if f"task-{n:04d}".lower() in account.job("sim-job").tasks
    ]


async def test_task_counts_are_the_truth(simulator):
    account, url = simulator
    truth = seeded_job(account)
    result = await asyncio.to_thread(lambda: client(url).get_job_task_counts("SIM-JOB"))
    assert result.task_counts.running == truth["running"] and result.task_counts.failed == truth["failed"]


async def test_wrong_key_is_403_authentication_failed(simulator):
    account, url = simulator
    seeded_job(account)
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleQ=="
    for bad in (client(url, key=wrong), client(url, name="other")):
        with pytest.raises(HttpResponseError) as raised:
            await asyncio.to_thread(bad.get_job_task_counts, "sim-job")
        assert raised.value.status_code == 403 and raised.value.error.code == "AuthenticationFailed"


async def test_errors_are_batch_style(simulator):
    account, url = simulator
    seeded_job(account)
    with pytest.raises(ResourceNotFoundError) as raised:
        await asyncio.to_thread(lambda: list(client(url).list_tasks("nope")))
    assert raised.value.error.code == "JobNotFound"
    for bad_filter in ("state eq", "bogus eq 'x'", "state eq 'a' xor"):
        with pytest.raises(HttpResponseError) as raised:
            await asyncio.to_thread(lambda text=bad_filter: list(client(url).list_tasks("sim-job", filter=text)))
        assert raised.value.status_code == 400 and raised.value.error.code == "InvalidQueryParameterValue"


async def test_list_jobs_and_get_job(simulator):
    account, url = simulator
    for n in range(3):
        account.create_job(f"job-{n}")
    jobs = await asyncio.to_thread(lambda: [j.id for j in client(url).list_jobs(max_results=2)])
    assert jobs == ["job-0", "job-1", "job-2"]
    job = await asyncio.to_thread(lambda: client(url).get_job("JOB-1"))
    assert job.id == "job-1"


def test_tasks_fit_in_600_bytes_each_and_a_page_looks_at_its_own_tasks_only():
    """Sized for the validation benchmark's 1,000,000 tasks (600 MB at most), measured on 200,000
    here (the suite stays quick; bench.validation runs the million and times a page). A page from the
    middle of the job looks at its 1,000 tasks, not the job's: counted, not timed."""
    import tracemalloc

    from tools.batchsim.model import SimTask

    class CountingTasks(dict):
        looked_at = 0

        def __contains__(self, key):
            CountingTasks.looked_at += 1
            return super().__contains__(key)

    tasks = 200_000
    tracemalloc.start()
    account = BatchAccount()
    account.create_job("huge")
    account.add_tasks("huge", [f"t-{n:07d}" for n in range(tasks)], publish=False)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    job = account.job("huge")
    order = job.ordered_keys()  # sorted once, on the job's first listing
    job.tasks = CountingTasks(job.tasks)
    keys = job.keys_after("t-0100000")
    page = [SimTask.to_json(job.tasks[next(keys)], "http://x/jobs/huge") for _ in range(1000)]
    assert page[0]["id"] == "t-0100001" and len(page) == 1000
    assert CountingTasks.looked_at == 1000 and job.ordered_keys() is order  # no walk over the job, no re-sort
    assert size / tasks < 600, f"{size / tasks:.0f} bytes a task"


async def test_batch_reader_rides_out_throttling_and_server_errors(simulator):
    """shared.batch retries 429 and 503 (honouring Retry-After) and still lists every task."""
    from shared.batch import BatchReader
    from shared.config import Settings

    account, url = simulator
    seeded_job(account, "flaky", tasks=2500)
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "BATCH_ACCOUNT_URL": url,
            "BATCH_ACCOUNT_NAME": DEFAULT_ACCOUNT,
            "BATCH_ACCOUNT_KEY": DEFAULT_KEY,
        }
    )
    reader = BatchReader.for_account(settings.accounts.default, settings)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/control/faults", json={"throttle": 0.3, "serverError": 0.1, "seed": 3}):
            pass
        try:
            listed, next_link = [], None
            for _ in range(20):
                page = await reader.list_page("flaky", next_link, page_size=500)
                listed += [task["id"] for task in page.tasks]
                next_link = page.next_link
                if next_link is None:
                    break
            size = await reader.job_size("flaky")
            missing = await reader.job_size("no-such-job")
        finally:
            async with session.post(f"{url}/control/faults", json={"throttle": 0, "serverError": 0}) as response:
                injected = (await response.json(content_type=None))["injected"]
            await reader.close()
    assert sorted(listed) == sorted(task.id for task in account.job("flaky").tasks.values())
    assert size == len(listed) and missing is None
    assert injected >= 3


async def test_creation_time_slices_list_exactly_the_tasks_created_then(simulator):
    """The simulator's creation-time index (a pre-filter) answers as the filter alone would."""
    from shared.events import ticks_to_iso

    account, url = simulator
    seeded_job(account, tasks=600)
    created = {task.id: task.creation_ticks for task in account.job("Sim-Job").tasks.values()}
    ticks = sorted(created.values())
    low, high = ticks[100], ticks[450]

    def listed(task_filter):
        return sorted(task.id for task in client(url).list_tasks("Sim-Job", filter=task_filter, max_results=70))

    bounded = f"creationTime ge DateTime'{ticks_to_iso(low)}' and creationTime lt DateTime'{ticks_to_iso(high)}'"
    expected = sorted(task_id for task_id, tick in created.items() if low <= tick < high)
    assert await asyncio.to_thread(listed, bounded) == expected and len(expected) == 350
    widened = f"{bounded} or id eq 'task-0599'"  # an "or" the index must not narrow
    assert await asyncio.to_thread(listed, widened) == sorted(expected + ["task-0599"])
    running = f"{bounded} and state eq 'running'"
    assert await asyncio.to_thread(listed, running) == sorted(
        task_id for task_id in expected if account.job("Sim-Job").tasks[task_id.lower()].state == "running"
    )


async def test_latency_delays_batch_calls_and_not_control_calls(simulator):
    """Benchmarks model a remote Batch: every Batch call answered late, the simulator's own routes not:
    a control call made while a Batch call waits out its latency is answered first."""
    import time

    account, url = simulator
    seeded_job(account, tasks=10)
    latency = 2.0
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/control/faults", json={}) as response:
            usual = (await response.json())["latency"]  # the run's own (BATCHSIM_LATENCY_MS), restored after
        async with session.post(f"{url}/control/faults", json={"latency": latency}) as response:
            assert response.status == 200

        async def counts_calls() -> int:
            async with session.get(f"{url}/control/calls") as response:
                return (await response.json()).get("/jobs/{jobId}/taskcounts", 0)

        try:
            before = await counts_calls()
            started = time.perf_counter()
            batch_call = asyncio.create_task(asyncio.to_thread(lambda: client(url).get_job_task_counts("Sim-Job")))
            while await counts_calls() == before:  # until the Batch call has reached the simulator
                assert not batch_call.done() or batch_call.result() is None, "answered before it was counted"
                await asyncio.sleep(0.01)
            assert not batch_call.done()  # answered while the Batch call waits: control calls are not held
            await batch_call
            batch_seconds = time.perf_counter() - started
        finally:
            async with session.post(f"{url}/control/faults", json={"latency": usual}) as response:
                assert response.status == 200
    assert batch_seconds >= latency


async def test_past_its_rate_limit_the_account_answers_429_with_the_wait_a_token_needs(simulator):
    """One request a thousand seconds: the first goes through, the next is refused with Retry-After
    (whole seconds, as Batch sends it) and counted; 0 lifts the limit."""
    account, url = simulator
    seeded_job(account, "Limited", tasks=5)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/control/faults", json={"rateLimit": 0.001}) as response:
            throttled_before = (await response.json())["throttled"]
        try:
            impatient = BatchClient(url, AzureNamedKeyCredential(DEFAULT_ACCOUNT, DEFAULT_KEY), retry_total=0)
            assert await asyncio.to_thread(impatient.get_job_task_counts, "Limited")
            with pytest.raises(HttpResponseError) as refused:
                await asyncio.to_thread(impatient.get_job_task_counts, "Limited")
            assert refused.value.status_code == 429 and refused.value.error.code == "TooManyRequests"
            assert 900 <= int(refused.value.response.headers["Retry-After"]) <= 1000
        finally:
            async with session.post(f"{url}/control/faults", json={"rateLimit": 0}) as response:
                state = await response.json()
    assert state["rateLimit"] is None and state["throttled"] == throttled_before + 1
    assert await asyncio.to_thread(client(url).get_job_task_counts, "Limited")  # the limit is gone


def test_a_rate_limit_refills_a_second_at_a_time():
    from tools.batchsim.server import RateLimit

    now = [0.0]
    limit = RateLimit(4, clock=lambda: now[0])
    assert [limit.retry_after() for _ in range(5)] == [None, None, None, None, 1]  # a second's worth, then refused
    now[0] = 0.5  # two tokens back
    assert [limit.retry_after() for _ in range(3)] == [None, None, 1]
    now[0] = 100.0  # never more than a second's worth saved up
    assert sum(limit.retry_after() is None for _ in range(10)) == 4


async def test_the_request_budget_stays_under_the_accounts_limit_and_a_refusal_pauses_every_caller(simulator):
    """Below the account's limit the budget spaces calls so none is refused; above it, each 429 pauses
    every caller for its Retry-After and every call still succeeds."""
    from shared.batch import BatchReader, budget_for
    from shared.config import Settings

    account, url = simulator
    seeded_job(account, "Budgeted", tasks=20)

    def reader_at(per_second: int) -> BatchReader:
        settings = Settings.from_env(
            {
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                "BATCH_ACCOUNT_URL": url,
                "BATCH_ACCOUNT_NAME": DEFAULT_ACCOUNT,
                "BATCH_ACCOUNT_KEY": DEFAULT_KEY,
                "BATCH_REQUESTS_PER_SECOND": str(per_second),
            }
        )
        return BatchReader.for_account(settings.accounts.default, settings)

    async def limit(per_second: float) -> int:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/control/faults", json={"rateLimit": per_second}) as response:
                return (await response.json())["throttled"]

    patient = reader_at(5)
    before = await limit(10)  # a second's worth (10) in the bucket, refilled faster than 5 a second
    try:
        sizes = await asyncio.gather(*(patient.job_size("Budgeted") for _ in range(10)))
    finally:
        throttled = await limit(0)
        await patient.close()
    assert sizes == [20] * 10 and throttled == before

    eager = reader_at(100)
    before = await limit(0.5)  # one call, then one every 2 s: the budget is over the account's limit
    try:
        sizes = await asyncio.gather(*(eager.job_size("Budgeted") for _ in range(3)))
    finally:
        throttled = await limit(0)
        await eager.close()
    refusals = budget_for(url, 100).refusals  # the account's budget, shared by every reader of it
    assert sizes == [20] * 3 and throttled - before >= 2 and refusals == throttled - before
