"""The function folders called as the Functions host calls them, against a real Azurite."""

import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import GetAccountTaskCounts
import GetTaskCounts
import JobTotals
import ListJobs
import SummarizeJobs
import TaskEvents
from shared.config import Settings
from shared.ingest import handle_delivery
from shared.store import CountsStore, get_store, raw_text_of
from tests.sample_files import event_grid, sample_bytes, task_data, validation_handshake
from tools.azurite import free_port
from tools.stack import INGEST_KEY, READ_KEY

pytestmark = pytest.mark.usefixtures("app_settings")
INGESTING = {"x-functions-key": INGEST_KEY}
READING = {"x-functions-key": READ_KEY}


def post(body: bytes, **headers) -> func.HttpRequest:
    return func.HttpRequest("POST", "http://localhost/api/taskevents", headers={**INGESTING, **headers}, body=body)


def get_counts(job_id: str) -> func.HttpRequest:
    return func.HttpRequest(
        "GET",
        f"http://localhost/api/jobs/{job_id}/taskcounts",
        headers=READING,
        route_params={"jobId": job_id},
        body=b"",
    )


def body_of(response: func.HttpResponse):
    return json.loads(response.get_body())


def event(job, task, state, at):
    return event_grid(
        task_data(jobId=job, id=task, state=state, stateTransitionTime=at), event_id=f"{task}-{state}-{at}"
    )


async def test_event_grid_validation_handshake():
    body = json.dumps([validation_handshake("abc-123")])
    response = await TaskEvents.main(post(body.encode(), **{"aeg-event-type": "SubscriptionValidation"}))
    assert (response.status_code, body_of(response)) == (200, {"validationResponse": "abc-123"})


async def test_cloudevents_abuse_protection_handshake():
    request = func.HttpRequest(
        "OPTIONS",
        "http://localhost/api/taskevents",
        body=b"",
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
    )
    response = await TaskEvents.main(request)
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    missing = await TaskEvents.main(func.HttpRequest("OPTIONS", "http://localhost/api/taskevents", body=b""))
    assert (missing.status_code, body_of(missing)["code"]) == (400, "MissingRequiredHeader")


async def test_both_schemas_are_applied_and_counted():
    for sample in ("eventgrid_batch.json", "cloudevents_batch.json"):
        response = await TaskEvents.main(post(sample_bytes(sample)))
        assert response.status_code == 200, response.get_body()
        assert body_of(response)["rejected"] == 0
    response = await GetTaskCounts.main(get_counts("render-42"))
    assert response.status_code == 200
    counts = body_of(response)
    # frame-0001 completed/success (2 slots), frame-0002 deleted, frame-0003 running,
    # frame-0004 completed/failure (service log, exit code 3)
    assert counts["taskCounts"] == {"active": 0, "running": 1, "completed": 2, "succeeded": 1, "failed": 1}
    assert counts["taskSlotCounts"] == {"active": 0, "running": 1, "completed": 3, "succeeded": 2, "failed": 1}
    assert counts["validationStatus"] == "unvalidated" and counts["lastValidatedAt"] is None
    assert counts["lastUpdatedAt"].endswith("Z")


async def test_redelivery_changes_nothing():
    batch = json.dumps([event("redo", "t1", "running", "2025-06-01T00:00:01Z")]).encode()
    first = body_of(await TaskEvents.main(post(batch)))
    again = body_of(await TaskEvents.main(post(batch)))
    assert (first["applied"], again["applied"], again["unchanged"]) == (1, 0, 1)
    counts = body_of(await GetTaskCounts.main(get_counts("REDO")))
    assert counts["taskCounts"]["running"] == 1


async def test_mixed_batch_applies_good_events_and_keeps_bad_ones():
    bad_state = event("mixed", "t2", "exploded", "2025-06-01T00:00:01Z")
    batch = [event("mixed", "t1", "active", "2025-06-01T00:00:01Z"), bad_state, "not an object"]
    response = await TaskEvents.main(post(json.dumps(batch).encode()))
    assert response.status_code == 200
    summary = body_of(response)
    assert (summary["received"], summary["applied"], summary["rejected"]) == (3, 1, 2)
    assert [r["index"] for r in summary["rejections"]] == [1, 2]
    assert "state must be one of" in summary["rejections"][0]["reason"]
    counts = body_of(await GetTaskCounts.main(get_counts("mixed")))
    assert counts["taskCounts"]["active"] == 1
    store = get_store(Settings.from_env())
    kept = {raw_text_of(row): row["Reason"] for row in await store.list_rejected(datetime.now(UTC))}
    assert json.dumps(bad_state, separators=(",", ":")) in kept
    assert '"not an object"' in kept


@pytest.mark.parametrize(
    "body,status,code",
    [
        (b"{not json", 400, "InvalidRequestBody"),
        (b"42", 400, "InvalidRequestBody"),
        (b"[" + b" " * (1024 * 1024) + b"]", 413, "RequestBodyTooLarge"),
    ],
)
async def test_unusable_bodies_get_batch_style_errors(body, status, code):
    response = await TaskEvents.main(post(body))
    error = body_of(response)
    assert response.status_code == status
    assert error["code"] == code and error["message"]["lang"] == "en-US" and error["message"]["value"]


async def test_unknown_job_is_404_job_not_found():
    response = await GetTaskCounts.main(get_counts("never-seen"))
    assert (response.status_code, body_of(response)["code"]) == (404, "JobNotFound")


@pytest.mark.parametrize("job_id", ["bad'id", "a" * 65, "job/1", ""])
async def test_invalid_job_id_is_400(job_id):
    response = await GetTaskCounts.main(get_counts(job_id))
    assert (response.status_code, body_of(response)["code"]) == (400, "InvalidUri")


def get_account_counts(account: str, job_id: str) -> func.HttpRequest:
    return func.HttpRequest(
        "GET",
        f"http://localhost/api/accounts/{account}/jobs/{job_id}/taskcounts",
        headers=READING,
        route_params={"account": account, "jobId": job_id},
        body=b"",
    )


async def test_a_job_is_addressed_by_its_account_and_the_default_accounts_routes_are_unchanged():
    await TaskEvents.main(post(json.dumps([event("Acct-Job", "t", "running", "2025-06-01T00:00:01Z")]).encode()))
    plain = await GetTaskCounts.main(get_counts("Acct-Job"))
    named = await GetAccountTaskCounts.main(get_account_counts("SimAccount", "acct-job"))
    assert (plain.status_code, named.status_code) == (200, 200)
    assert body_of(named)["taskCounts"] == body_of(plain)["taskCounts"] and body_of(plain)["taskCounts"]["running"] == 1
    unknown = await GetAccountTaskCounts.main(get_account_counts("teamb", "Acct-Job"))
    assert (unknown.status_code, body_of(unknown)["code"]) == (404, "AccountNotFound")
    for bad in ("ab", "team-b", "x" * 25):
        malformed = await GetAccountTaskCounts.main(get_account_counts(bad, "Acct-Job"))
        assert (malformed.status_code, body_of(malformed)["code"]) == (400, "InvalidUri"), bad


async def test_list_jobs_function_pages_and_rejects_bad_parameters():
    for n in range(3):
        await TaskEvents.main(post(json.dumps([event(f"list-{n}", "t", "active", "2025-06-01T00:00:01Z")]).encode()))
    await SummarizeJobs.main(TimerRequest())  # the list reads the summaries this timer keeps
    ids, url = [], "http://localhost/api/jobs?maxresults=2"
    for _ in range(50):
        if url is None:
            break
        params = dict(parse_qsl(urlsplit(url).query))
        page = body_of(await ListJobs.main(func.HttpRequest("GET", url, params=params, headers=READING, body=b"")))
        assert len(page["value"]) <= 2
        ids += [job["id"] for job in page["value"]]
        url = page.get("odata.nextLink")
    assert url is None
    assert {"list-0", "list-1", "list-2"} <= set(ids)
    for params in ({"maxresults": "0"}, {"maxresults": "x"}, {"$skiptoken": "garbage!"}):
        response = await ListJobs.main(
            func.HttpRequest("GET", "http://localhost/api/jobs", params=params, headers=READING, body=b"")
        )
        assert (response.status_code, body_of(response)["code"]) == (400, "InvalidQueryParameterValue")


async def test_the_jobs_list_names_each_jobs_account_and_filters_by_one():
    await TaskEvents.main(post(json.dumps([event("listed-acct", "t", "active", "2025-06-01T00:00:01Z")]).encode()))
    await SummarizeJobs.main(TimerRequest())

    async def listed(**params):
        url = "http://localhost/api/jobs"
        return await ListJobs.main(func.HttpRequest("GET", url, params=params, headers=READING, body=b""))

    jobs, params = [], {"maxresults": "1000", "account": "SimAccount"}
    while params:  # every page, whatever else the suite has stored
        page = body_of(await listed(**params))
        jobs += page["value"]
        params = dict(parse_qsl(urlsplit(page["odata.nextLink"]).query)) if "odata.nextLink" in page else {}
    assert {job["account"] for job in jobs} == {"simaccount"} and "listed-acct" in {job["id"] for job in jobs}
    unknown = await listed(account="teamb")
    assert (unknown.status_code, body_of(unknown)["code"]) == (404, "AccountNotFound")
    malformed = await listed(account="team-b")
    assert (malformed.status_code, body_of(malformed)["code"]) == (400, "InvalidQueryParameterValue")


async def test_the_totals_function_sums_the_jobs_summaries_and_refuses_an_unknown_account():
    await TaskEvents.main(post(json.dumps([event("totalled", "t", "running", "2025-06-01T00:00:01Z")]).encode()))
    await SummarizeJobs.main(TimerRequest())

    async def totals(**params):
        url = "http://localhost/api/totals"
        return await JobTotals.main(func.HttpRequest("GET", url, params=params, headers=READING, body=b""))

    body = body_of(await totals())
    assert body["fleet"]["jobs"] >= 1 and body["fleet"]["taskCounts"]["running"] >= 1
    assert [entry["account"] for entry in body["accounts"]] == ["simaccount"]
    assert body_of(await totals(account="SimAccount"))["fleet"] == body["fleet"]
    unknown = await totals(account="teamb")
    assert (unknown.status_code, body_of(unknown)["code"]) == (404, "AccountNotFound")
    unread = await JobTotals.main(func.HttpRequest("GET", "http://localhost/api/totals", headers={}, body=b""))
    assert unread.status_code == 401


async def test_storage_outage_is_503_and_redelivery_afterwards_counts_once(azurite):
    """Storage down -> 503 (Event Grid retries); the retried delivery then counts exactly once."""
    dead = Settings.from_env(
        {
            "AzureWebJobsStorage": azurite.connection_string.replace(f":{azurite.port}/", f":{free_port()}/"),
            "COUNTS_TABLE_PREFIX": "dead",
        }
    )
    batch = json.dumps([event("outage", "t1", "running", "2025-06-01T00:00:01Z")]).encode()
    import logging

    from shared.replies import guarded

    dead_store = CountsStore.from_settings(dead)
    reply = await guarded(logging.getLogger("test"), handle_delivery(dead_store, "POST", {}, batch, datetime.now(UTC)))
    await dead_store.close()
    assert (reply.status, reply.body["code"]) == (503, "ServerBusy")
    for _ in range(2):  # Event Grid's retry, then a duplicate
        assert (await TaskEvents.main(post(batch))).status_code == 200
    counts = body_of(await GetTaskCounts.main(get_counts("outage")))
    assert counts["taskCounts"]["running"] == 1
