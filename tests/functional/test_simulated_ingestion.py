"""Simulator workloads delivered through the webhook over HTTP, with Event Grid's faults."""

import random

import aiohttp
import pytest

from tools.batchsim.model import BatchAccount, counts_of_events
from tools.batchsim.publisher import Faults, publish
from tools.stack import INGEST_KEY, READ_KEY


@pytest.fixture
def app_url(app_server):
    return app_server.url


async def served_counts(app_url, job_id):
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{app_url}/api/jobs/{job_id}/taskcounts", headers={"x-functions-key": READ_KEY}
        ) as response:
            assert response.status == 200
            body = await response.json(content_type=None)
    return body["taskCounts"], body["taskSlotCounts"]


def workload(account, job_id, tasks, rounds, seed):
    account.create_job(job_id)
    account.add_tasks(job_id, [f"t{n:05d}" for n in range(tasks)], required_slots=2)
    rng = random.Random(seed)
    for _ in range(rounds):
        account.step(job_id, rng, tasks)


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
async def test_duplicates_and_reordering_never_move_a_count(app_url, schema):
    account = BatchAccount()
    job_id = f"dup-{schema}"
    workload(account, job_id, tasks=600, rounds=6, seed=3)
    report = await publish(
        account.take_outbox(),
        f"{app_url}/api/taskevents",
        headers={"x-functions-key": INGEST_KEY},
        max_events_per_batch=250,
        schema=schema,
        faults=Faults(duplicate=0.3, reorder=True),
        concurrency=4,
        seed=11,
    )
    assert report.duplicated > 0 and report.dead_lettered == 0 and report.delivered == report.events + report.duplicated
    truth = account.task_counts(job_id)
    assert await served_counts(app_url, job_id) == (truth["taskCounts"], truth["taskSlotCounts"])


async def test_drops_are_the_only_difference(app_url):
    """With events dropped, each task's stored state is its newest *delivered* event, exactly."""
    account = BatchAccount()
    workload(account, "drops", tasks=400, rounds=5, seed=5)
    events = account.take_outbox()
    report = await publish(
        events,
        f"{app_url}/api/taskevents",
        headers={"x-functions-key": INGEST_KEY},
        max_events_per_batch=100,
        faults=Faults(drop=0.1, duplicate=0.1, reorder=True),
        seed=2,
    )
    assert report.dropped > 0
    dropped = set(report.dropped_sequences)
    expected = counts_of_events([event for event in events if event.sequence not in dropped])
    tasks, _ = await served_counts(app_url, "drops")
    assert tasks == expected
    assert tasks != account.task_counts("drops")["taskCounts"]  # what validation must close (issue 3)
