"""A catalogue of bad input through the HTTP surface, each with its expected response.

Every case either gets a clear Batch-style error or is kept as a rejected event; none crashes
the app or moves a count."""

import json

import aiohttp
import pytest

from tests.sample_files import cloud_event, event_grid, service_log_record, task_data, validation_handshake
from tools.stack import INGEST_KEY, MASTER_KEY, READ_KEY

GOOD_JOB = "catalogue-good"


def task(**fields):
    """An event for a task of the job no bad event may create; ``fields`` replace the task's."""
    return event_grid(task_data(**{"jobId": "catalogue-bad", **fields}), event_id="e")


def good_task(job, task_id, event_id):
    return event_grid(task_data(jobId=job, id=task_id, state="active"), event_id=event_id)


REJECTED = [  # (kind, element) -> 200, the element rejected with a reason and kept
    ("array of non-objects", 42),
    ("wrong schema: neither eventType nor specversion", {"hello": "world"}),
    ("missing data", {k: v for k, v in task().items() if k != "data"}),
    ("data is a list", event_grid([1, 2])),
    ("missing jobId", event_grid({k: v for k, v in task_data().items() if k != "jobId"})),
    ("jobId is a number", task(jobId=7)),
    ("unknown state", task(state="exploded")),
    ("state is an object", task(state={"$ne": None})),
    ("unknown event type", event_grid(task_data(jobId="catalogue-bad"), event_type="Batch.JobScheduled")),
    ("event type is not a string", event_grid(task_data(jobId="catalogue-bad"), event_type=["Batch.TaskStateChanged"])),
    ("OData injection in jobId", task(jobId="a' or '1' eq '1")),
    ("OData keyword with spaces", task(id="t eq t")),
    ("slash in task id (Table key)", task(id="t/1")),
    ("backslash in task id", task(id="t\\1")),
    ("hash in task id", task(id="t#1")),
    ("question mark in task id", task(id="t?1")),
    ("control character in id", task(id="t\u00011")),
    ("non-ASCII id", task(id="tâche")),
    ("empty id", task(id="")),
    ("65-character id", task(id="x" * 65)),
    ("far-future timestamp", task(stateTransitionTime="2999-01-01T00:00:00Z")),
    ("unparseable timestamp", task(stateTransitionTime="last Tuesday")),
    ("timestamp without a zone", task(stateTransitionTime="2025-06-01T00:00:00")),
    ("timestamp is a number", task(stateTransitionTime=1717200000)),
    ("requiredSlots negative", task(requiredSlots=-2)),
    ("requiredSlots huge", task(requiredSlots=10**12)),
    ("retryCount is a string", task(executionInfo={"retryCount": "3"})),
    ("unknown result", task(state="completed", executionInfo={"result": "partial"})),
    ("id and taskId disagree", task(taskId="t2")),
    ("CloudEvents 0.3", cloud_event(task()["data"], specversion="0.3")),
    ("CloudEvents binary data", cloud_event(data_base64="AAAA")),
    (
        "service-log record with a non-integer exit code",
        event_grid(
            service_log_record("task_complete_success", jobId="catalogue-bad", executionInfo={"exitCode": "zero"})
        ),
    ),
    (
        "service-log record without properties",
        event_grid({k: v for k, v in service_log_record("task_start").items() if k != "properties"}),
    ),
    ("huge invalid event (800 KB)", task(state="x" * 800_000)),
]

REFUSED = [  # (kind, body, status, Batch error code): the delivery as a whole is refused
    ("not JSON", b"{nope", 400, "InvalidRequestBody"),
    ("empty body", b"", 400, "InvalidRequestBody"),
    ("JSON number", b"42", 400, "InvalidRequestBody"),
    ("JSON null", b"null", 400, "InvalidRequestBody"),
    ("deep nesting", b"[" * 50_000 + b"]" * 50_000, 400, "InvalidRequestBody"),
    ("body over 1 MB", json.dumps([task(note="x" * (1024 * 1024))]).encode(), 413, "RequestBodyTooLarge"),
    (
        "validation handshake without a code",
        json.dumps([event_grid({}, event_type="Microsoft.EventGrid.SubscriptionValidationEvent")]).encode(),
        400,
        "InvalidRequestBody",
    ),
    (
        "validation handshake with a numeric code",
        json.dumps([validation_handshake(12)]).encode(),
        400,
        "InvalidRequestBody",
    ),
]


async def post(session, url, body, headers=None):
    async with session.post(
        f"{url}/api/taskevents", data=body, headers={"x-functions-key": INGEST_KEY, **(headers or {})}
    ) as response:
        return response.status, await response.json(content_type=None) if response.content_length else None


@pytest.mark.parametrize("kind,element", REJECTED, ids=[kind for kind, _ in REJECTED])
async def test_bad_events_are_rejected_with_a_reason_and_the_rest_applied(app_server, kind, element):
    good = good_task(GOOD_JOB, f"g-{[k for k, _ in REJECTED].index(kind)}", f"good-{kind}")
    async with aiohttp.ClientSession() as session:
        status, body = await post(session, app_server.url, json.dumps([good, element]).encode())
    assert status == 200, body
    assert (body["applied"], body["rejected"]) == (1, 1), body
    assert body["rejections"][0]["index"] == 1 and len(body["rejections"][0]["reason"]) > 10


@pytest.mark.parametrize("kind,body,status,code", REFUSED, ids=[kind for kind, *_ in REFUSED])
async def test_unusable_deliveries_are_refused_with_batch_style_errors(app_server, kind, body, status, code):
    async with aiohttp.ClientSession() as session:
        got, error = await post(session, app_server.url, body)
    assert (got, error["code"]) == (status, code)
    assert error["message"]["lang"] == "en-US" and error["message"]["value"]


@pytest.mark.parametrize(
    "method,path,headers,status",
    [
        ("POST", "/api/taskevents", {}, 401),  # no key
        ("POST", "/api/taskevents", {"x-functions-key": "wrong"}, 401),  # wrong key
        ("POST", "/api/taskevents?code=wrong", {}, 401),  # wrong key in the query
        ("GET", "/api/taskevents", {"x-functions-key": INGEST_KEY}, 405),  # wrong method
        ("PUT", "/api/jobs/x/taskcounts", {"x-functions-key": READ_KEY}, 405),
        ("GET", "/api/nowhere", {"x-functions-key": READ_KEY}, 404),  # unknown route
        ("POST", "/admin/functions/ValidateCounts", {"x-functions-key": READ_KEY}, 401),  # admin needs the master key
        ("POST", "/admin/functions/TaskEvents", {"x-functions-key": MASTER_KEY}, 404),  # not a timer
        ("GET", "/runtime/webhooks/durabletask/instances/x", {"x-functions-key": READ_KEY}, 401),
    ],
)
async def test_keys_methods_and_routes_are_enforced(app_server, method, path, headers, status):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{app_server.url}{path}", headers=headers, data=b"[]") as response:
            assert response.status == status


@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/api/jobs/a'b/taskcounts", 400, "InvalidUri"),
        ("/api/jobs/" + "x" * 65 + "/taskcounts", 400, "InvalidUri"),
        ("/api/jobs/no-such-job/taskcounts", 404, "JobNotFound"),
        ("/api/jobs?maxresults=0", 400, "InvalidQueryParameterValue"),
        ("/api/jobs?maxresults=abc", 400, "InvalidQueryParameterValue"),
        ("/api/jobs?$skiptoken=not-a-token", 400, "InvalidQueryParameterValue"),
    ],
)
async def test_bad_reads_get_batch_style_errors(app_server, path, status, code):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{app_server.url}{path}", headers=app_server.headers) as response:
            assert response.status == status
            assert (await response.json(content_type=None))["code"] == code


async def test_handshake_abuse_is_refused(app_server):
    async with aiohttp.ClientSession() as session:
        async with session.options(f"{app_server.url}/api/taskevents", headers=app_server.headers) as response:
            assert response.status == 400  # no WebHook-Request-Origin


async def test_the_whole_catalogue_moves_no_count_wrongly(app_server):
    """Every bad element next to a good one, in one delivery: only the good ones count."""
    job = "catalogue-all"
    good = [good_task(job, f"g{n}", f"all-good-{n}") for n in range(len(REJECTED))]
    mixed = [item for pair in zip(good, (element for _, element in REJECTED), strict=True) for item in pair]
    async with aiohttp.ClientSession() as session:
        status, body = await post(session, app_server.url, json.dumps(mixed).encode())
        assert status == 200 and (body["applied"], body["rejected"]) == (len(REJECTED), len(REJECTED))
        async with session.get(f"{app_server.url}/api/jobs/{job}/taskcounts", headers=app_server.headers) as r:
            counts = (await r.json(content_type=None))["taskCounts"]
        async with session.get(f"{app_server.url}/api/jobs/catalogue-bad/taskcounts", headers=app_server.headers) as r:
            assert r.status == 404  # no bad event created the job it names
    assert counts == {"active": len(REJECTED), "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
    assert len(REJECTED) + len(REFUSED) >= 30
