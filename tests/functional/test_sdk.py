"""The official azure-batch SDK reads the counts API over real HTTP, unchanged."""

import asyncio
import base64
import json

import aiohttp
import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.timer import TimerRequest

import SummarizeJobs
from tests.sample_files import event_grid, task_data
from tools.stack import INGEST_KEY, READ_KEY


@pytest.fixture
def base_url(app_server):
    return app_server.url


def sdk_client(base_url: str) -> BatchClient:
    # The SDK insists on a credential; the counts API authenticates with the function key instead.
    credential = AzureNamedKeyCredential("taskcounts", base64.b64encode(b"unused").decode())
    return BatchClient(f"{base_url}/api", credential)


async def deliver(base_url, events):
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base_url}/api/taskevents", json=events, headers={"x-functions-key": INGEST_KEY}
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()


def event(task, state, at, **data):
    return event_grid(
        task_data(jobId="SDK-Job", id=task, state=state, stateTransitionTime=at, **data), event_id=f"{task}-{at}"
    )


async def test_sdk_reads_task_counts(base_url):
    await deliver(
        base_url,
        [
            event("a", "active", "2025-06-01T00:00:01Z"),
            event("b", "running", "2025-06-01T00:00:01Z", requiredSlots=2),
            event("c", "completed", "2025-06-01T00:00:01Z", executionInfo={"result": "success", "exitCode": 0}),
            event("d", "completed", "2025-06-01T00:00:01Z", executionInfo={"result": "failure", "exitCode": 1}),
        ],
    )
    result = await asyncio.to_thread(
        lambda: sdk_client(base_url).get_job_task_counts("sdk-job", headers={"x-functions-key": READ_KEY})
    )
    counts, slots = result.task_counts, result.task_slot_counts
    assert (counts.active, counts.running, counts.completed, counts.succeeded, counts.failed) == (1, 1, 2, 1, 1)
    assert (slots.active, slots.running, slots.completed, slots.succeeded, slots.failed) == (1, 2, 2, 1, 1)


async def test_sdk_raises_resource_not_found_for_unknown_job(base_url):
    def call():
        return sdk_client(base_url).get_job_task_counts("no-such-job", headers={"x-functions-key": READ_KEY})

    with pytest.raises(ResourceNotFoundError) as raised:
        await asyncio.to_thread(call)
    assert raised.value.error.code == "JobNotFound"


async def test_requests_without_a_valid_key_are_refused(base_url):
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"x-functions-key": "wrong"}):
            async with session.get(f"{base_url}/api/jobs/sdk-job/taskcounts", headers=headers) as response:
                assert response.status == 401
        async with session.get(f"{base_url}/api/jobs/sdk-job/taskcounts?code={READ_KEY}") as response:
            assert response.status == 200
        async with session.delete(
            f"{base_url}/api/jobs/sdk-job/taskcounts", headers={"x-functions-key": READ_KEY}
        ) as response:
            assert response.status == 405
        async with session.get(f"{base_url}/api/nothing-here", headers={"x-functions-key": READ_KEY}) as response:
            assert response.status == 404


async def test_list_jobs_over_http(base_url):
    await deliver(base_url, [event("x", "active", "2025-06-01T00:00:01Z")])
    await SummarizeJobs.main(TimerRequest())  # the app's own timer, in this process: the list reads its summaries
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/api/jobs", headers={"x-functions-key": READ_KEY}) as response:
            body = json.loads(await response.text())
    assert "SDK-Job" in [job["id"] for job in body["value"]]
