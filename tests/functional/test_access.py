"""Who may call what, over HTTP through the local host: each kind of key opens its own routes and no
other; a refused request writes nothing; in entra mode the app's role checks read the principal
header as App Service Authentication passes it; and the local host models the host's own keys."""

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from shared.config import get_settings
from shared.store import get_store
from tests.sample_files import event_grid, principal, task_data
from tools.azurite import free_port
from tools.funchost import FunctionApp, Keys, serve, stop
from tools.stack import INGEST_KEY, OPERATE_KEY, READ_KEY

READ_ROUTES = [
    ("GET", "/api/jobs/access-job/taskcounts"),
    ("GET", "/api/jobs"),
    ("GET", "/api/totals"),
    ("GET", "/api/jobs/access-job/history"),
]
INGEST_ROUTE = ("POST", "/api/taskevents")
OPERATE_ROUTE = ("POST", "/api/jobs/access-job/validate")


def delivery(job_id: str) -> bytes:
    """One good event and one that is rejected (and would be kept) for ``job_id``."""
    good = event_grid(task_data(jobId=job_id, id="t1"), event_id=f"{job_id}-good")
    bad = event_grid(task_data(jobId=job_id, id="t/1"), event_id=f"{job_id}-bad")
    return json.dumps([good, bad]).encode()


async def call(app_server, method: str, path: str, headers: dict | None = None, body: bytes = b"[]"):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{app_server.url}{path}", headers=headers or {}, data=body) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


def keyed(key: str) -> dict:
    return {"x-functions-key": key}


async def test_each_key_opens_its_own_routes_and_no_other(app_server):
    status, _ = await call(app_server, *INGEST_ROUTE, keyed(INGEST_KEY), delivery("access-job"))
    assert status == 200
    for method, path in READ_ROUTES:
        assert (await call(app_server, method, path, keyed(READ_KEY)))[0] == 200, path
        for other in (INGEST_KEY, OPERATE_KEY):
            status, body = await call(app_server, method, path, keyed(other))
            assert (status, body["code"]) == (401, "AuthenticationFailed"), (path, other)
    for other in (READ_KEY, OPERATE_KEY):
        status, body = await call(app_server, *INGEST_ROUTE, keyed(other), delivery("access-job"))
        assert (status, body["code"]) == (401, "AuthenticationFailed")
    for other in (READ_KEY, INGEST_KEY):
        assert (await call(app_server, *OPERATE_ROUTE, keyed(other)))[0] == 401
    assert (await call(app_server, *OPERATE_ROUTE, keyed(OPERATE_KEY)))[0] == 202


@pytest.mark.parametrize(
    "name,headers,query",
    [
        ("no key", {}, ""),
        ("a wrong key", keyed("not-a-key-of-this-app"), ""),
        ("a read key", keyed(READ_KEY), ""),
        ("header and ?code= disagree", keyed(INGEST_KEY), f"?code={READ_KEY}"),
        ("a very long key", keyed("k" * 8_000), ""),  # under the HTTP header limit, far over any key
        ("a very long key in ?code=", {}, "?code=" + "k" * 4_000),
    ],
)
async def test_a_refused_delivery_gets_a_clear_401_and_nothing_is_written(app_server, name, headers, query):
    job_id = "refused-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    status, body = await call(app_server, "POST", f"/api/taskevents{query}", headers, delivery(job_id))
    assert (status, body["code"]) == (401, "AuthenticationFailed"), name
    assert len(body["message"]["value"]) > 20 and INGEST_KEY not in json.dumps(body)
    status, _ = await call(app_server, "GET", f"/api/jobs/{job_id}/taskcounts", keyed(READ_KEY))
    assert status == 404  # no event applied
    kept = await get_store(get_settings()).list_rejected(datetime.now(UTC))
    assert not any(row["EventId"] == f"{job_id}-bad" for row in kept)  # no rejection kept either


async def test_the_key_may_come_as_code_and_both_places_may_name_it(app_server):
    assert (await call(app_server, "GET", f"/api/jobs?code={READ_KEY}"))[0] == 200
    assert (await call(app_server, "GET", f"/api/jobs?code={READ_KEY}", keyed(READ_KEY)))[0] == 200


@pytest.fixture
def entra_mode(app_server, monkeypatch):
    """The app configured for Entra ID, with App Service Authentication on (as the platform says)."""
    monkeypatch.setenv("ACCESS_MODE", "entra")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


async def test_entra_mode_checks_the_app_role_of_the_signed_in_identity(app_server, entra_mode):
    signed_in = {"X-MS-CLIENT-PRINCIPAL": principal("TaskCounts.Read")}
    for method, path in READ_ROUTES:
        assert (await call(app_server, method, path, signed_in))[0] in (200, 404), path
    status, body = await call(app_server, *INGEST_ROUTE, signed_in, delivery("entra-job"))
    assert (status, body["code"]) == (403, "InsufficientPermissions")
    assert (await call(app_server, *OPERATE_ROUTE, signed_in))[0] == 403
    event_grid_principal = {
        "X-MS-CLIENT-PRINCIPAL": principal(
            "AzureEventGridSecureWebhookSubscriber",
            role_type="http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        )
    }
    assert (await call(app_server, *INGEST_ROUTE, event_grid_principal, delivery("entra-job")))[0] == 200
    operator = {"X-MS-CLIENT-PRINCIPAL": principal("TaskCounts.Operate")}
    assert (await call(app_server, *OPERATE_ROUTE, operator))[0] == 202
    assert (await call(app_server, "GET", "/api/jobs", operator))[0] == 403  # operate does not imply read


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 401),  # not signed in
        ({"X-MS-CLIENT-PRINCIPAL": "not base64 !"}, 401),
        ({"X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"[1, 2]").decode()}, 401),
        ({"X-MS-CLIENT-PRINCIPAL": principal()}, 403),  # signed in, no role
        (keyed(READ_KEY), 401),  # keys open nothing in entra mode
    ],
)
async def test_entra_mode_refuses_who_has_no_role(app_server, entra_mode, headers, status):
    got, body = await call(app_server, "GET", "/api/jobs", headers)
    assert got == status
    assert body["code"] == {401: "SignInRequired", 403: "InsufficientPermissions"}[status]


async def test_entra_mode_without_app_service_authentication_believes_no_header(app_server, entra_mode):
    entra_mode.delenv("WEBSITE_AUTH_ENABLED")
    get_settings.cache_clear()
    status, body = await call(app_server, "GET", "/api/jobs", {"X-MS-CLIENT-PRINCIPAL": principal("TaskCounts.Read")})
    assert (status, body["code"]) == (503, "AuthenticationNotConfigured")


KEYED_APP = Path(__file__).parent / "keyed_app"


@pytest.fixture
async def keyed_host():
    keys = Keys(
        master="test-master-key-0000",
        host={"default": "test-host-key-00000"},
        functions={"Keyed": {"default": "test-keyed-key-0000"}, "Other": {"mine": "test-other-key-0000"}},
    )
    port = free_port()
    runner, local = await serve(FunctionApp.load(KEYED_APP), keys, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    await stop(runner, local)


@pytest.mark.parametrize(
    "key,keyed_status,other_status,admin_status",
    [
        ("test-master-key-0000", 200, 200, 200),  # the master key opens everything
        ("test-host-key-00000", 200, 200, 401),  # a host key: every authLevel=function function
        ("test-keyed-key-0000", 200, 401, 401),  # a function key: its own function only
        ("test-other-key-0000", 401, 200, 401),
        ("wrong", 401, 401, 401),
        (None, 401, 401, 401),
    ],
)
async def test_the_local_host_models_master_host_and_function_keys(
    keyed_host, key, keyed_status, other_status, admin_status
):
    headers = keyed(key) if key else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        for route, expected in (("keyed", keyed_status), ("other", other_status), ("adminonly", admin_status)):
            async with session.get(f"{keyed_host}/api/{route}") as response:
                assert response.status == expected, route
