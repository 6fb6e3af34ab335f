"""tools.funchost's durable surface: the durableClient binding, status endpoints, timers, admin."""

import asyncio
import json
import logging
import re

import aiohttp

from shared.validation import workflow
from tools.azurite import free_port
from tools.batchsim.publisher import publish
from tools.funchost import Keys, banner, serve, stop
from tools.stack import MASTER_KEY, READ_KEY


async def wait_for_output(session, status_url, timeout=60, headers=None):
    """Poll a status URL as a client would: 202 while running, 200 when done."""
    for _ in range(int(timeout * 10)):
        async with session.get(status_url, headers=headers or {}) as response:
            body = await response.json(content_type=None)
            if response.status != 202:
                return response.status, body
        await asyncio.sleep(0.1)
    raise AssertionError(f"still running after {timeout}s: {body}")


async def seed(app_server, simulator, job_id, tasks=1500):
    account, _ = simulator
    account.create_job(job_id)
    account.add_tasks(job_id, [f"t{n:05d}" for n in range(tasks)])
    account.start(job_id, "t00001", publish=False)  # drift for the validation to find
    await publish(account.take_outbox(), f"{app_server.url}/api/taskevents", headers=app_server.ingest_headers)


async def test_on_demand_validation_answers_202_and_can_be_followed(app_server, simulator):
    await seed(app_server, simulator, "OnDemand")
    hold = f"{simulator[1]}/control/holds"
    async with aiohttp.ClientSession() as session:
        async with session.post(hold, json={"jobId": "OnDemand", "after": 0}) as held:  # the pass waits to list
            assert held.status == 201
        url = f"{app_server.url}/api/jobs/OnDemand/validate"
        async with session.post(url, headers=app_server.operate_headers) as response:
            assert response.status == 202
            links = await response.json(content_type=None)
            assert response.headers["Location"] == links["statusQueryGetUri"]
        # its own status route, read access: no Durable management URL (they carry a system key)
        assert links["statusQueryGetUri"] == f"{app_server.url}/api/jobs/OnDemand/validation"
        assert "code=" not in json.dumps(links) and set(links) == {"id", "jobId", "statusQueryGetUri"}
        assert links["id"] == workflow.on_demand_instance_id("ondemand")
        async with session.post(url, headers=app_server.operate_headers) as again:  # still running: same instance
            assert again.status == 202 and (await again.json(content_type=None))["id"] == links["id"]
        async with session.get(links["statusQueryGetUri"]) as keyless:
            assert keyless.status == 401
        async with session.get(links["statusQueryGetUri"], headers=app_server.headers) as running:
            assert running.status == 202 and running.headers["Retry-After"] == "2"
        async with session.delete(f"{hold}/OnDemand") as released:
            assert released.status == 200
        status, body = await wait_for_output(session, links["statusQueryGetUri"], headers=app_server.headers)
        assert status == 200 and body["runtimeStatus"] == "Completed", body
        assert body["output"]["action"] == "validated" and body["output"]["corrected"]["stale"] == 1
        assert body["customStatus"]["phase"] == "sweeping" and body["customStatus"]["tasksListed"] == 1500
        async with session.get(f"{app_server.url}/api/jobs/OnDemand/taskcounts", headers=app_server.headers) as r:
            counts = await r.json(content_type=None)
        assert counts["taskCounts"] == simulator[0].task_counts("OnDemand")["taskCounts"]
        async with session.post(
            f"{app_server.url}/api/jobs/bad!id/validate", headers=app_server.operate_headers
        ) as bad:
            assert bad.status == 400 and (await bad.json(content_type=None))["code"] == "InvalidUri"
        async with session.get(
            f"{app_server.url}/api/jobs/NeverValidated/validation", headers=app_server.headers
        ) as none:
            assert none.status == 404 and (await none.json(content_type=None))["code"] == "ValidationNotFound"
        async with session.post(url) as keyless:
            assert keyless.status == 401


async def test_admin_endpoint_fires_the_timer_which_starts_each_due_job_on_its_own(app_server, simulator):
    await seed(app_server, simulator, "Scheduled", tasks=300)
    async with aiohttp.ClientSession() as session:
        admin = f"{app_server.url}/admin/functions/ValidateCounts"
        async with session.post(admin, headers={"x-functions-key": READ_KEY}) as refused:
            assert refused.status == 401  # the admin API takes the master key only
        async with session.post(admin, headers={"x-functions-key": MASTER_KEY}, json={}) as response:
            assert response.status == 202
        status_url = (
            f"{app_server.url}/runtime/webhooks/durabletask/instances/"
            f"{workflow.on_demand_instance_id('scheduled')}?code={MASTER_KEY}"
        )
        for _ in range(100):
            async with session.get(status_url) as probe:
                if probe.status != 404:
                    break
            await asyncio.sleep(0.1)
        status, body = await wait_for_output(session, status_url)
        assert status == 200 and body["output"]["action"] == "validated", body
        async with session.get(status_url.replace(MASTER_KEY, "wrong")) as wrong:
            assert wrong.status == 401


async def test_timer_fires_on_its_ncrontab_schedule(app_server, simulator, monkeypatch):
    await seed(app_server, simulator, "Ticked", tasks=10)
    monkeypatch.setenv("VALIDATION_SCHEDULE", "*/1 * * * * *")  # every second
    monkeypatch.setenv("TASK_SYNC_SCHEDULE", "0 0 0 1 1 *")
    monkeypatch.setenv("PROGRESS_SCHEDULE", "0 0 0 1 1 *")
    monkeypatch.setenv("SUMMARY_SCHEDULE", "0 0 0 1 1 *")
    engine, instance_id = app_server.local.engine, workflow.on_demand_instance_id("ticked")
    app_server.local.start_triggers()
    try:
        for _ in range(100):
            if engine.instances.get(instance_id) is not None:
                break
            await asyncio.sleep(0.1)
        assert engine.instances.get(instance_id) is not None
        await engine.wait(instance_id)
    finally:
        await app_server.local.stop_triggers()


async def test_a_timer_with_an_unset_or_bad_schedule_is_in_error_and_the_others_run(app_server, monkeypatch, caplog):
    """As the Functions host: '%SETTING%' that does not resolve, or a schedule that is no NCRONTAB,
    puts that one function in error (one line naming it and why) and the rest of the app runs."""
    monkeypatch.setenv("VALIDATION_SCHEDULE", "every five minutes")
    monkeypatch.setenv("TASK_SYNC_SCHEDULE", "0 0 0 1 1 *")
    monkeypatch.delenv("PROGRESS_SCHEDULE", raising=False)
    monkeypatch.setenv("SUMMARY_SCHEDULE", "0 0 0 1 1 *")
    port = free_port()
    with caplog.at_level(logging.ERROR, logger="tools.funchost"):
        runner, local = await serve(app_server.app, Keys(master=MASTER_KEY), "127.0.0.1", port, triggers=True)
    try:
        assert sorted(local.errors) == ["RecordProgress", "ValidateCounts"]
        assert "'%PROGRESS_SCHEDULE%' does not resolve to a value" in local.errors["RecordProgress"]
        assert "six-field NCRONTAB" in local.errors["ValidateCounts"]
        assert local.schedules == {  # the others run
            "SummarizeJobs": "0 0 0 1 1 *",
            "SyncTasks": "0 0 0 1 1 *",
            "WatchedSync": "*/1 * * * * *",
        }
        lines = [record.getMessage() for record in caplog.records if record.name == "tools.funchost"]
        assert len(lines) == 2 and any(
            line.startswith("The 'RecordProgress' function is in error: '%PROGRESS_SCHEDULE%'") for line in lines
        ), lines
        assert "RecordProgress: Error: '%PROGRESS_SCHEDULE%' does not resolve" in banner(local)
        async with aiohttp.ClientSession(headers={"x-functions-key": MASTER_KEY}) as session:
            async with session.post(f"http://127.0.0.1:{port}/admin/functions/RecordProgress") as fired:
                assert fired.status == 404 and "%PROGRESS_SCHEDULE%" in await fired.text()
            async with session.get(f"http://127.0.0.1:{port}/api/openapi.json") as served:  # HTTP functions run on
                assert served.status == 200
    finally:
        await stop(runner, local)


async def test_terminate_through_the_management_url(app_server):
    engine = app_server.local.engine

    async def slow(payload):
        await asyncio.sleep(30)

    engine.functions[workflow.BEGIN] = ("activityTrigger", slow)
    try:
        instance = engine.start(workflow.VALIDATE_JOB, '{"jobKey": "x", "jobId": "x"}', "to-terminate")
        async with aiohttp.ClientSession() as session:
            url = (
                f"{app_server.url}/runtime/webhooks/durabletask/instances/to-terminate/terminate"
                f"?reason=test&code={MASTER_KEY}"
            )
            async with session.post(url) as response:
                assert response.status == 202
            async with session.post(url) as again:
                assert again.status == 410
        assert instance.runtime_status == "Terminated"
    finally:
        engine.functions[workflow.BEGIN] = ("activityTrigger", app_server.app.functions[workflow.BEGIN].entry)


async def test_the_dashboard_is_served_without_a_key_from_its_catch_all_route(app_server):
    base = f"{app_server.url}/api/dashboard"
    async with aiohttp.ClientSession() as session:
        async with session.get(base, allow_redirects=False) as bare:
            assert bare.status == 301 and bare.headers["Location"] == "dashboard/"
        async with session.get(f"{base}/") as page:
            html = await page.text()
            assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        for asset in re.findall(r'(?:src|href)="([a-z]+\.(?:js|css))"', html):
            async with session.get(f"{base}/{asset}") as served:
                assert served.status == 200, asset
                etag = served.headers["ETag"]
            async with session.get(f"{base}/{asset}", headers={"If-None-Match": etag}) as again:
                assert again.status == 304 and await again.read() == b""
        async with session.get(f"{base}/secrets.txt") as missing:
            assert missing.status == 404 and (await missing.json())["code"] == "ResourceNotFound"
        async with session.get(f"{app_server.url}/api/jobs") as unkeyed:  # the data still needs a key
            assert unkeyed.status == 401
