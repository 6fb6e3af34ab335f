"""Several Batch accounts in one deployment, against two Batch simulators (real SDK, SharedKey) and
Azurite: each account's jobs are synced and validated from its own Batch, jobs of one id in two
accounts stay apart, and jobs of an account no longer configured are left as they are."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared import api, sync
from shared.accounts import Accounts
from shared.accounts import BatchAccount as CountedAccount
from shared.batch import BatchReader
from shared.config import Settings
from shared.counting import TaskState
from shared.store import CountsStore
from shared.validation import activities
from shared.validation.payloads import Begin, JobRef, Scan, begun
from shared.validation.scheduling import select_jobs
from tests.conftest import make_settings
from tests.strategies import observe
from tools.azurite import free_port
from tools.batchsim.model import BatchAccount
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY, serve

ZERO = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}


@pytest.fixture
async def two_accounts(azurite):
    """The default account and "teamb", each a simulator with a job "Render" (7 and 3 tasks, one of
    teamb's running); settings naming both, a store, and each account's reader."""
    sims, runners = {}, []
    for name, tasks in ((DEFAULT_ACCOUNT, 7), ("teamb", 3)):
        sim, port = BatchAccount(), free_port()
        runners.append(await serve(sim, "127.0.0.1", port, account_name=name))
        sim.create_job("Render")
        sim.add_tasks("Render", [f"t{n}" for n in range(tasks)], publish=False)
        sims[name] = (sim, f"http://127.0.0.1:{port}")
    sims["teamb"][0].start("Render", "t0")
    accounts = Accounts(tuple(CountedAccount(name, url=url, key=DEFAULT_KEY) for name, (_, url) in sims.items()))
    settings = replace(make_settings(azurite), accounts=accounts)
    store = CountsStore.from_settings(settings)
    readers = {settings.accounts.key_name(a): BatchReader.for_account(a, settings) for a in accounts.accounts}
    yield settings, store, readers
    await store.close()
    for reader in readers.values():
        await reader.close()
    for runner in runners:
        await runner.cleanup()


async def tasks_of(store, job_key):
    return (await store.get_job_counts(job_key)).tasks.as_dict()


async def test_each_account_is_synced_from_its_own_batch_into_jobs_of_its_own(two_accounts):
    """One run per account, each listing its own Batch; the default account's job keeps its key."""
    settings, store, readers = two_accounts
    reports = await sync.run_every_account(store, readers.__getitem__, settings, datetime.now(UTC))
    assert [report.tasks_listed for report in reports] == [7, 3] and not any(report.failed for report in reports)
    assert await tasks_of(store, "render") == {**ZERO, "active": 7}
    assert await tasks_of(store, "teamb~render") == {**ZERO, "active": 2, "running": 1}


async def test_a_pass_begins_with_its_own_accounts_batch_and_leaves_an_unconfigured_accounts_jobs(two_accounts):
    settings, store, readers = two_accounts
    await sync.run_every_account(store, readers.__getitem__, settings, datetime.now(UTC))
    deps = activities.Deps(store, readers.__getitem__, settings, datetime.now(UTC))
    scan = begun(await activities.begin(deps, Begin(JobRef("Render", "teamb~render")).to_json()))
    assert isinstance(scan, Scan) and scan.expected_tasks == 3  # teamb's Batch was asked, not the default's
    # teamb dropped from the settings: its job is neither validated nor removed
    later = datetime.now(UTC) + timedelta(days=settings.retention_days + 1)
    alone = replace(settings, accounts=Accounts(settings.accounts.accounts[:1]))
    plan = await select_jobs(activities.Deps(store, readers.__getitem__, alone, later))
    planned = {job.job_key for job in plan.validate + plan.remove}
    assert "render" in planned and "teamb~render" not in planned
    assert await tasks_of(store, "teamb~render") == {**ZERO, "active": 2, "running": 1}


async def test_adding_an_account_keeps_the_data_and_urls_of_a_deployment_that_had_one(azurite):
    """A deployment counted one account; its settings gain a second. The first account's jobs are
    where they were (same keys, /api/jobs/... answers as before, and by its name too); the new one's
    job of the same id is its own."""
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "COUNTS_TABLE_PREFIX": "upgrade",
        "BATCH_ACCOUNT_NAME": "contoso",
    }
    before = Settings.from_env(env)
    store = CountsStore.from_settings(before)
    await store.apply([observe("Render", f"t{n}", TaskState.RUNNING, 1) for n in range(4)])
    await store.close()

    extra = '[{"name": "teamb", "url": "https://teamb.eastus.batch.azure.com"}]'
    after = Settings.from_env({**env, "BATCH_EXTRA_ACCOUNTS": extra})
    store = CountsStore.from_settings(after)
    try:
        await store.apply([replace(observe("Render", "t9", TaskState.ACTIVE, 1), account="teamb")])
        reading = api.Reading.now_for(after, None)
        for route in ({"jobId": "Render"}, {"jobId": "Render", "account": "contoso"}):
            address = api.address_of(after.accounts, route)
            reply = await api.get_task_counts(store, address, reading)
            assert (reply.status, reply.body["taskCounts"]) == (200, {**ZERO, "running": 4}), route
        theirs = await api.get_task_counts(
            store, api.address_of(after.accounts, {"jobId": "Render", "account": "teamb"}), reading
        )
        assert theirs.body["taskCounts"] == {**ZERO, "active": 1}
    finally:
        await store.close()
