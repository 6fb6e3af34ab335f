"""The CLI with Microsoft Entra ID: it sends a bearer token for the app registration, no key, and says
what to do when the token is refused or the role is missing. No token can be had here, so a stand-in
credential gives one (azure-core's TokenCredential protocol, as DefaultAzureCredential implements it)."""

import asyncio

import pytest
from aiohttp import web
from azure.core.credentials import AccessToken

from cli.taskcounts import Api, CliError
from tools import serving
from tools.azurite import free_port


class StandInCredential:
    def __init__(self, failure: Exception | None = None):
        self.scopes, self.failure = [], failure

    def get_token(self, *scopes, **_):
        if self.failure:
            raise self.failure
        self.scopes.append(scopes)
        return AccessToken("token-for-the-app", 2_000_000_000)


@pytest.fixture
async def api_server():
    """An HTTP server answering /api/jobs as the app would, recording each request's headers (the
    CLI is synchronous: the tests call it on a thread while this loop serves)."""
    seen, answer = [], {"status": 200}

    async def jobs(request):
        seen.append(dict(request.headers))
        if answer["status"] != 200:
            return web.json_response(
                {"code": "InsufficientPermissions", "message": {"value": "no role"}}, status=answer["status"]
            )
        return web.json_response({"value": [{"id": "job-1"}]})

    app, port = web.Application(), free_port()
    app.router.add_get("/api/jobs", jobs)
    runner = await serving.start(app, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}", seen, answer
    await runner.cleanup()


async def test_a_token_for_the_app_registration_is_sent_and_no_key(api_server):
    url, seen, _ = api_server
    credential = StandInCredential()
    api = Api(url, "a-key-that-must-not-be-sent", credential=credential, audience="api://app-id/")
    jobs = await asyncio.to_thread(api.jobs)
    assert [job["id"] for job in jobs] == ["job-1"]
    assert credential.scopes == [("api://app-id/.default",)]
    assert seen[0]["Authorization"] == "Bearer token-for-the-app" and "x-functions-key" not in seen[0]


async def test_a_missing_role_and_a_missing_sign_in_are_explained(api_server):
    url, _, answer = api_server
    answer["status"] = 403
    with pytest.raises(CliError, match="TaskCounts.Read"):
        await asyncio.to_thread(Api(url, None, credential=StandInCredential(), audience="api://app-id").jobs)
    failing = StandInCredential(RuntimeError("DefaultAzureCredential failed to retrieve a token\nmore"))
    with pytest.raises(CliError, match="az login"):
        await asyncio.to_thread(Api(url, None, credential=failing, audience="api://app-id").jobs)
