"""Crash safety: the function host is SIGKILLed in the middle of applying deliveries and in the
middle of a validation pass, then restarted; redelivery and the next pass leave exact counts."""
import asyncio
import random
import time

import pytest
import requests
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from tools.batchsim.model import BatchAccount
from tools.batchsim.publisher import Faults, publish
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY
from tools.stack import FUNCTION_KEY, Stack

pytestmark = pytest.mark.e2e
KEYED = {"x-functions-key": FUNCTION_KEY}


@pytest.fixture(scope="module")
def stack():
    with Stack(validation_schedule="0 0 0 1 1 *", service_log=False, task_sync_schedule=None) as running:
        yield running


def counts(stack, job_id):
    return requests.get(f"{stack.app_url}/api/jobs/{job_id}/taskcounts", headers=KEYED, timeout=10).json()["taskCounts"]


async def kill_and_restart_during(stack, work, after_seconds):
    """Run ``work`` (a coroutine), SIGKILL the host after ``after_seconds``, restart it at once."""
    task = asyncio.create_task(work)
    await asyncio.sleep(after_seconds)
    assert not task.done(), "the work finished before the kill: make it bigger"
    stack.kill_app()
    await asyncio.to_thread(stack.start_app)
    return await task


def test_killed_while_applying_deliveries_nothing_is_lost_or_double_counted(stack):
    account = BatchAccount()  # this test's own workload; events go to the stack's webhook
    account.create_job("crash-ingest")
    account.add_tasks("crash-ingest", [f"t{n:05d}" for n in range(4000)], required_slots=2)
    rng = random.Random(3)
    for _ in range(4):
        account.step("crash-ingest", rng, 4000)
    events = account.take_outbox()

    report = asyncio.run(kill_and_restart_during(stack, publish(
        events, f"{stack.app_url}/api/taskevents", headers=KEYED, max_events_per_batch=200,
        faults=Faults(duplicate=0.1, reorder=True), concurrency=4, seed=5), after_seconds=0.5))
    assert report.retries > 0, "no delivery was cut by the kill"
    assert report.dead_lettered == 0 and report.delivered == report.events + report.duplicated
    truth = account.task_counts("crash-ingest")["taskCounts"]
    assert counts(stack, "crash-ingest") == truth


def test_killed_during_a_validation_pass_the_next_pass_converges(stack):
    job = "crash-validate"
    requests.post(f"{stack.simulator_url}/control/jobs", json={"id": job, "tasks": 15000, "publish": False},
                  timeout=60).raise_for_status()
    requests.post(f"{stack.simulator_url}/control/jobs/{job}/step", json={"moves": 15000, "seed": 1},
                  timeout=60).raise_for_status()
    requests.post(f"{stack.simulator_url}/control/publish", json={
        "url": f"{stack.app_url}/api/taskevents", "headers": KEYED, "drop": 0.3}, timeout=120).raise_for_status()

    async def validate_once():
        started = await asyncio.to_thread(requests.post, f"{stack.app_url}/api/jobs/{job}/validate",
                                          headers=KEYED, timeout=10)
        return started.headers["Location"]

    async def pass_in_progress():
        location = await validate_once()
        while True:  # running until the kill cuts it
            try:
                status = await asyncio.to_thread(requests.get, location, timeout=5)
            except requests.ConnectionError:
                return "killed"
            if status.status_code != 202:
                return status.json()
            await asyncio.sleep(0.05)

    outcome = asyncio.run(kill_and_restart_during(stack, pass_in_progress(), after_seconds=1.0))
    assert outcome == "killed"
    # The local host keeps orchestration state in memory: the pass is gone, not half-recorded.
    location = asyncio.run(validate_once())
    for _ in range(600):
        status = requests.get(location, timeout=10)
        if status.status_code != 202:
            break
        time.sleep(0.1)
    assert status.status_code == 200 and status.json()["output"]["action"] == "validated", status.text
    sdk = BatchClient(stack.simulator_url, AzureNamedKeyCredential(DEFAULT_ACCOUNT, DEFAULT_KEY))
    c = sdk.get_job_task_counts(job).task_counts
    assert counts(stack, job) == {"active": c.active, "running": c.running, "completed": c.completed,
                                  "succeeded": c.succeeded, "failed": c.failed}
