"""End to end through processes: Azurite, the Batch simulator and tools.funchost, over HTTP
with the protocols Azure uses (Event Grid webhook, Functions keys, Durable client, Batch SDK)."""

import base64
import json
import time
from datetime import UTC, datetime

import pytest
import requests
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from shared.config import DEFAULT_COUNTS_MAX_AGE_MS, Settings
from shared.store import CountsStore, raw_text_of
from tests.cli.run import run_cli
from tests.sample_files import event_grid, sample_bytes, task_data, validation_handshake
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY
from tools.stack import INGEST_KEY, MASTER_KEY, OPERATE_KEY, READ_KEY, Stack

pytestmark = pytest.mark.e2e
KEYED = {"x-functions-key": READ_KEY}
INGESTING = {"x-functions-key": INGEST_KEY}
OPERATING = {"x-functions-key": OPERATE_KEY}


@pytest.fixture(scope="module")
def stack():
    with Stack(
        validation_schedule="0 0 0 1 1 *", service_log=False, task_sync_schedule=None
    ) as running:  # the timer only fires when asked
        yield running


def simulator(stack):
    return BatchClient(stack.simulator_url, AzureNamedKeyCredential(DEFAULT_ACCOUNT, DEFAULT_KEY))


def publish(stack, **faults):
    return stack.control("publish", {"url": f"{stack.app_url}/api/taskevents", "headers": INGESTING, **faults})


def counts(stack, job_id):
    response = requests.get(f"{stack.app_url}/api/jobs/{job_id}/taskcounts", headers=KEYED, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def truth(stack, job_id):
    c = simulator(stack).get_job_task_counts(job_id).task_counts
    return {
        "active": c.active,
        "running": c.running,
        "completed": c.completed,
        "succeeded": c.succeeded,
        "failed": c.failed,
    }


def follow(url, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(url, headers=KEYED, timeout=10)
        if response.status_code not in (202, 404):
            return response.status_code, response.json()
        time.sleep(0.2)
    raise AssertionError(f"not finished after {timeout}s: {url}")


def test_event_grid_validation_handshake_needs_no_key(stack):
    """Event Grid may send its handshakes without the delivery's key header; they write nothing."""
    handshake = [validation_handshake("e2e-code")]
    response = requests.post(
        f"{stack.app_url}/api/taskevents",
        json=handshake,
        timeout=10,
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert response.status_code == 200 and response.json() == {"validationResponse": "e2e-code"}
    options = requests.options(
        f"{stack.app_url}/api/taskevents", timeout=10, headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert options.status_code == 200 and options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_both_schemas_are_delivered_and_the_sdk_reads_the_counts(stack):
    for sample, content_type in (
        ("eventgrid_batch.json", "application/json"),
        ("cloudevents_batch.json", "application/cloudevents-batch+json"),
    ):
        response = requests.post(
            f"{stack.app_url}/api/taskevents",
            data=sample_bytes(sample),
            headers={**INGESTING, "Content-Type": content_type},
            timeout=10,
        )
        assert response.status_code == 200 and response.json()["rejected"] == 0
    sdk = BatchClient(f"{stack.app_url}/api", AzureNamedKeyCredential("unused", base64.b64encode(b"x").decode()))
    result = sdk.get_job_task_counts("Render-42", headers=KEYED)
    assert (result.task_counts.running, result.task_counts.completed, result.task_counts.failed) == (1, 2, 1)
    assert result.task_slot_counts.completed == 3


def test_requests_without_a_key_are_refused(stack):
    assert requests.get(f"{stack.app_url}/api/jobs/render-42/taskcounts", timeout=10).status_code == 401
    assert requests.post(f"{stack.app_url}/api/taskevents", json=[], timeout=10).status_code == 401
    assert (
        requests.get(f"{stack.app_url}/api/jobs", headers={"x-functions-key": "wrong"}, timeout=10).status_code == 401
    )


def test_bad_deliveries_are_rejected_and_kept(stack):
    bad = event_grid(task_data(jobId="e2e-bad", id="t/1"), event_id="bad-1")
    good = event_grid(task_data(jobId="e2e-bad", id="t1"), event_id="good-1")
    response = requests.post(f"{stack.app_url}/api/taskevents", json=[good, bad], headers=INGESTING, timeout=10)
    assert response.status_code == 200 and response.json()["rejected"] == 1
    assert counts(stack, "e2e-bad")["taskCounts"]["running"] == 1
    not_json = requests.post(f"{stack.app_url}/api/taskevents", data=b"{oops", headers=INGESTING, timeout=10)
    assert not_json.status_code == 400 and not_json.json()["code"] == "InvalidRequestBody"

    import asyncio

    async def kept():
        store = CountsStore.from_settings(Settings.from_env({"AzureWebJobsStorage": stack.azurite.connection_string}))
        try:
            return [raw_text_of(row) for row in await store.list_rejected(datetime.now(UTC))]
        finally:
            await store.close()

    assert any('"bad-1"' in raw for raw in asyncio.run(kept()))


def test_timer_admin_endpoint_starts_a_validation_that_corrects_drift(stack):
    stack.control("jobs", {"id": "E2E-Timer", "tasks": 1200})
    stack.control("jobs/E2E-Timer/step", {"moves": 2400, "seed": 1})
    publish(stack, drop=0.2, duplicate=0.2, reorder=True, seed=1)
    assert counts(stack, "E2E-Timer")["taskCounts"] != truth(stack, "E2E-Timer")
    fired = requests.post(
        f"{stack.app_url}/admin/functions/ValidateCounts", json={}, timeout=10, headers={"x-functions-key": MASTER_KEY}
    )
    assert fired.status_code == 202
    # the timer starts each due job's validation on its own, under the job's instance id
    status, body = follow(f"{stack.app_url}/api/jobs/E2E-Timer/validation")  # the same instance as on demand
    assert status == 200 and body["output"]["action"] == "validated", body
    time.sleep(DEFAULT_COUNTS_MAX_AGE_MS / 1000)  # the read before the pass may still be answered until then
    after = counts(stack, "E2E-Timer")
    assert after["taskCounts"] == truth(stack, "E2E-Timer") and after["validationStatus"] == "validated"


def test_on_demand_validation_followed_through_the_status_endpoint(stack):
    stack.control("jobs", {"id": "E2E-Now", "tasks": 800})
    publish(stack)
    for n in range(40):
        stack.control(f"jobs/E2E-Now/tasks/task-{n:07d}/start", {"publish": False})  # events lost
    started = requests.post(f"{stack.app_url}/api/jobs/E2E-Now/validate", headers=OPERATING, timeout=10)
    assert started.status_code == 202
    status, body = follow(started.headers["Location"])
    assert status == 200 and body["output"]["corrected"]["stale"] == 40
    assert counts(stack, "E2E-Now")["taskCounts"] == truth(stack, "E2E-Now")


def test_cli_reads_counts_and_explains_wrong_urls_keys_and_jobs(stack):
    delivered = requests.post(
        f"{stack.app_url}/api/taskevents", headers=INGESTING, timeout=10, data=sample_bytes("eventgrid_batch.json")
    )
    assert delivered.status_code == 200
    code, out, err = run_cli("--url", stack.app_url, "--key", READ_KEY, "get", "Render-42", "--json")
    assert code == 0, err
    assert json.loads(out)["taskCounts"]["completed"] >= 1
    code, out, _ = run_cli("--url", stack.app_url, "--key", READ_KEY, "get", "Render-42")
    assert code == 0 and "succeeded" in out and "validation:" in out
    deadline = time.monotonic() + 60
    while True:  # the list follows once SummarizeJobs has run (every 2 s in the stack)
        code, out, _ = run_cli("--url", stack.app_url, "--key", READ_KEY, "jobs")
        if "Render-42" in out or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 0 and "Render-42" in out and "simaccount" in out  # each job with its account
    code, out, _ = run_cli("--url", stack.app_url, "--key", READ_KEY, "jobs", "--prefix", "render-4", "--limit", "5")
    assert code == 0 and "Render-42" in out  # filtered by the API: a prefix, case-insensitive
    code, out, _ = run_cli("--url", stack.app_url, "--key", READ_KEY, "jobs", "--prefix", "nothing")
    assert code == 0 and "Render-42" not in out
    code, out, err = run_cli("--url", stack.app_url, "--key", READ_KEY, "--account", "simaccount", "get", "Render-42")
    assert code == 0 and "succeeded" in out, err  # the default account, by name
    code, _, err = run_cli("--url", stack.app_url, "--key", READ_KEY, "--account", "teamb", "get", "Render-42")
    assert code == 1 and "teamb" in err
    code, _, err = run_cli("--url", stack.app_url, "--key", READ_KEY, "get", "no-such-job")
    assert code == 1 and "no such job" in err
    code, _, err = run_cli("--url", stack.app_url, "--key", "wrong", "get", "Render-42")
    assert code == 2 and "key was refused" in err
    code, _, err = run_cli("--url", "http://127.0.0.1:9", "get", "Render-42")
    assert code == 2 and "cannot reach" in err
    code, _, err = run_cli("--url", f"{stack.app_url}/nothing", "--key", READ_KEY, "get", "Render-42")
    assert code == 2 and "no taskcounts API" in err
    code, out, _ = run_cli("--url", stack.app_url, "--key", READ_KEY, "watch", "Render-42", "--interval", "0.2")
    assert code == 0 and "Render-42" in out  # no active or running task left: watch ends by itself
