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
from tools.stack import INGEST_KEY, OPERATE_KEY, READ_KEY, Stack

pytestmark = pytest.mark.e2e
KEYED = {"x-functions-key": READ_KEY}
INGESTING = {"x-functions-key": INGEST_KEY}
OPERATING = {"x-functions-key": OPERATE_KEY}


@pytest.fixture(scope="module")
def stack():
    # A fault proxy with no random faults in front of Azurite: the tests hold storage with it.
    with Stack(
        validation_schedule="0 0 0 1 1 *", service_log=False, task_sync_schedule=None, storage_faults=(0.0, 0.0)
    ) as running:
        yield running


def counts(stack, job_id):
    return requests.get(f"{stack.app_url}/api/jobs/{job_id}/taskcounts", headers=KEYED, timeout=10).json()["taskCounts"]


async def until(check, what: str, work: asyncio.Task | None = None, timeout: float = 120):
    """Wait for ``check()`` to hold; fail if ``work`` ends first (the gate was never reached)."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert work is None or not work.done(), f"the work ended before {what}"
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


def storage_gate(stack, **change) -> dict:
    response = requests.post(f"{stack.proxy_url}/_faults", json=change, timeout=60)
    response.raise_for_status()
    return response.json()


def test_killed_while_applying_deliveries_nothing_is_lost_or_double_counted(stack):
    account = BatchAccount()  # this test's own workload; events go to the stack's webhook
    account.create_job("crash-ingest")
    account.add_tasks("crash-ingest", [f"t{n:05d}" for n in range(4000)], required_slots=2)
    rng = random.Random(3)
    for _ in range(4):
        account.step("crash-ingest", rng, 4000)
    events = account.take_outbox()

    async def kill_between_two_writes():
        # 20 transactions reach storage, then the host is held between two of its writes and killed
        # there: some deliveries are half applied, none answered.
        storage_gate(stack, holdAfterBatches=20)
        delivering = asyncio.create_task(
            publish(
                events,
                f"{stack.app_url}/api/taskevents",
                headers=INGESTING,
                max_events_per_batch=200,
                faults=Faults(duplicate=0.1, reorder=True),
                concurrency=4,
                seed=5,
            )
        )
        await until(lambda: storage_gate(stack)["held"] > 0, "storage held a write", delivering)
        stack.kill_app()
        storage_gate(stack, release=True)  # the dead host's held writes land late, as a network may deliver them
        await asyncio.to_thread(stack.start_app)
        return await delivering

    report = asyncio.run(kill_between_two_writes())
    assert report.retries > 0, "no delivery was cut by the kill"
    assert report.dead_lettered == 0 and report.delivered == report.events + report.duplicated
    truth = account.task_counts("crash-ingest")["taskCounts"]
    assert counts(stack, "crash-ingest") == truth


def test_killed_during_a_validation_pass_the_next_pass_converges(stack):
    job = "crash-validate"
    requests.post(
        f"{stack.simulator_url}/control/jobs", json={"id": job, "tasks": 15000, "publish": False}, timeout=60
    ).raise_for_status()
    requests.post(
        f"{stack.simulator_url}/control/jobs/{job}/step", json={"moves": 15000, "seed": 1}, timeout=60
    ).raise_for_status()
    requests.post(
        f"{stack.simulator_url}/control/publish",
        json={"url": f"{stack.app_url}/api/taskevents", "headers": INGESTING, "drop": 0.3},
        timeout=120,
    ).raise_for_status()
    hold_url = f"{stack.simulator_url}/control/holds"

    def validate_once():
        started = requests.post(f"{stack.app_url}/api/jobs/{job}/validate", headers=OPERATING, timeout=10)
        assert started.status_code == 202, started.text
        return started.headers["Location"]

    async def kill_mid_listing():
        # The job lists 15 pages at least: 4 are answered, then the listing waits, so the pass is
        # certainly under way (listing rows written, pages in flight) when the host is killed.
        requests.post(hold_url, json={"jobId": job, "after": 4}, timeout=10).raise_for_status()
        location = validate_once()
        await until(
            lambda: requests.get(f"{hold_url}/{job}", timeout=10).json()["waiting"] > 0,
            "the pass listed its first pages",
        )
        assert requests.get(location, headers=KEYED, timeout=10).status_code == 202  # still running
        stack.kill_app()
        requests.delete(f"{hold_url}/{job}", timeout=10).raise_for_status()
        await asyncio.to_thread(stack.start_app)

    asyncio.run(kill_mid_listing())
    # The local host keeps orchestration state in memory: the pass is gone, not half-recorded.
    location = validate_once()
    for _ in range(600):
        status = requests.get(location, headers=KEYED, timeout=10)
        if status.status_code != 202:
            break
        time.sleep(0.1)
    assert status.status_code == 200 and status.json()["output"]["action"] == "validated", status.text
    sdk = BatchClient(stack.simulator_url, AzureNamedKeyCredential(DEFAULT_ACCOUNT, DEFAULT_KEY))
    c = sdk.get_job_task_counts(job).task_counts
    assert counts(stack, job) == {
        "active": c.active,
        "running": c.running,
        "completed": c.completed,
        "succeeded": c.succeeded,
        "failed": c.failed,
    }
