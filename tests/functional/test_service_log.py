"""BatchServiceLogs called as the host calls it (List[func.EventHubEvent]) against Azurite, and the
local host's Event Hubs trigger against the simulator's hub: batches, retries and checkpoints."""

import asyncio
import json
import random
from datetime import UTC, datetime

import aiohttp
import azure.functions as func
import pytest

import BatchServiceLogs
from shared.config import get_settings
from shared.errors import StoreUnavailableError
from shared.ingest import apply_service_log
from shared.store import CountsStore, get_store, raw_text_of
from tests.conftest import make_settings
from tests.sample_files import SAMPLE_ACCOUNTS, hub_message, service_log_record
from tools.azurite import free_port
from tools.batchsim.hub import EventHub, ExportDelay, LogFaults, pump
from tools.batchsim.model import BatchAccount
from tools.batchsim.server import serve
from tools.hubtrigger import HubTrigger, RetryPolicy, timespan_seconds

NOW = datetime.now(UTC)


def at(seconds: int) -> str:
    return datetime.fromtimestamp(NOW.timestamp() - 600 + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def hub_events(*bodies: str) -> list[func.EventHubEvent]:
    return [func.EventHubEvent(body=body.encode()) for body in bodies]


@pytest.mark.usefixtures("app_settings")
async def test_records_are_counted_once_bad_ones_kept_and_others_ignored():
    job = "Log-Job-1"
    start = service_log_record("task_start", jobId=job, id="t1", executionInfo={"startTime": at(1)})
    done = service_log_record(
        "task_complete_failure", jobId=job, id="t1", executionInfo={"startTime": at(1), "endTime": at(5)}
    )
    fail = service_log_record("task_fail", jobId=job, id="t1", executionInfo={"startTime": at(1), "endTime": at(5)})
    requeued = service_log_record("task_requeue", at(3), jobId=job, id="t2")
    unrun = service_log_record("task_complete_before_run", jobId=job, id="t3", executionInfo={"endTime": at(4)})
    bad = service_log_record("task_start", jobId=job, id="t#4")
    noise = [service_log_record("special_task_start", jobId=job), service_log_record("pool_resize_complete")]
    # out of order, duplicated across messages, in one invocation and again in a redelivery
    messages = hub_events(
        hub_message(done, requeued, noise[0], bad), hub_message(start, fail, unrun, noise[1]), "not an envelope"
    )
    await BatchServiceLogs.main(messages)
    await BatchServiceLogs.main(messages)

    store = get_store(get_settings())
    counts = (await store.get_job_counts(job.lower())).tasks.as_dict()
    assert counts == {"active": 1, "running": 0, "completed": 2, "succeeded": 0, "failed": 2}
    kept = {row["Reason"]: raw_text_of(row) for row in await store.list_rejected(datetime.now(UTC))}
    assert any("task id" in reason and json.loads(raw) == bad for reason, raw in kept.items())
    assert any("Event Hubs message" in reason and raw == "not an envelope" for reason, raw in kept.items())


async def test_storage_trouble_raises_so_the_retry_policy_runs_the_batch_again(azurite):
    dead = make_settings(
        azurite, AzureWebJobsStorage=azurite.connection_string.replace(f":{azurite.port}/", f":{free_port()}/")
    )
    store = CountsStore.from_settings(dead)
    try:
        with pytest.raises(StoreUnavailableError):
            await apply_service_log(store, [hub_message(service_log_record("task_start"))], NOW, SAMPLE_ACCOUNTS)
    finally:
        await store.close()


def test_the_function_json_retries_forever_with_backoff():
    spec = json.load(open(BatchServiceLogs.__file__.replace("__init__.py", "function.json")))
    policy = RetryPolicy.from_function_json(spec["retry"])
    assert spec["bindings"][0]["cardinality"] == "many" and spec["bindings"][0]["dataType"] == "string"
    assert [policy.wait_before(n) for n in (1, 2, 3, 10, 1000)] == [5, 10, 20, 300, 300]
    assert timespan_seconds("1.00:00:01.5") == 86_401.5


async def test_the_local_trigger_retries_a_failing_batch_and_checkpoints_after_it():
    account, port = BatchAccount(keep_service_log=True), free_port()
    runner = await serve(account, "127.0.0.1", port)
    seen: list[list[int]] = []
    failures = {"left": 2}

    async def flaky(events):
        seen.append([event.sequence_number for event in events])
        if failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailableError("storage is down")

    trigger = HubTrigger(
        "BatchServiceLogs",
        f"http://127.0.0.1:{port}",
        "hub-x",
        "taskcounts",
        3,
        RetryPolicy("fixedDelay", -1, delay=0.01),
        flaky,
    )
    reader = asyncio.create_task(trigger.run())
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(4):  # 4 messages over 2 partitions
                account.create_job(f"hub-{n}")
                account.add_tasks(f"hub-{n}", ["a"])
                account.start(f"hub-{n}", "a")
            async with session.post(
                f"http://127.0.0.1:{port}/control/servicelog", json={"hub": "hub-x", "recordsPerMessage": 1, "noise": 0}
            ) as response:
                assert (await response.json())["messages"] == 4

            async def checkpoints() -> list[int]:
                found = []
                for partition in (0, 1):
                    async with session.get(
                        f"http://127.0.0.1:{port}/eventhubs/hub-x/consumergroups/taskcounts/checkpoints/{partition}"
                    ) as response:
                        found.append((await response.json())["sequenceNumber"])
                return found

            for _ in range(1200):  # until both partitions are checkpointed past their messages (or 60 s)
                if await checkpoints() == [1, 1]:
                    break
                await asyncio.sleep(0.05)
            checkpointed = await checkpoints()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await runner.cleanup()
    assert trigger.retries == 2 and seen[0] == seen[1] == seen[2]  # the same batch, again and again
    assert sorted(sequence for batch in seen[2:] for sequence in batch) == [0, 0, 1, 1]
    assert checkpointed == [1, 1]


def test_pump_writes_several_records_per_message_with_noise_duplicates_and_loss():
    account = BatchAccount(keep_service_log=True)
    account.create_job("pumped")
    account.add_tasks("pumped", [f"t{n}" for n in range(200)])
    for n in range(200):
        account.start("pumped", f"t{n}")
        account.complete("pumped", f"t{n}", n % 3)
    hub = EventHub()
    report = pump(
        account.take_log_outbox(),
        hub,
        LogFaults(drop=0.1, duplicate=0.1, reorder=True, noise=0.2),
        records_per_message=40,
        seed=1,
    )
    bodies = [message["body"] for partition in hub.partitions for message in partition]
    records = [record for body in bodies for record in json.loads(body)["records"]]
    assert report.records == 200 + 200 + 133  # starts, completions, and a TaskFailEvent per failure
    assert len(records) == report.records - report.dropped + report.duplicated + report.noise
    assert report.dropped and report.duplicated and report.noise and len(bodies) == report.messages > 1
    assert {r["operationName"] for r in records} >= {
        "TaskStartEvent",
        "TaskCompleteEvent",
        "TaskFailEvent",
        "PoolResizeCompleteEvent",
    }


def test_export_delays_center_on_the_median_and_stop_at_the_tail():
    rng = random.Random(4)
    delays = sorted(ExportDelay(60, 180).draw(rng) for _ in range(20_000))
    assert 57 <= delays[len(delays) // 2] <= 63 and delays[-1] == 180
    assert 0.005 <= sum(delay == 180 for delay in delays) / len(delays) <= 0.02  # ~1% held to the tail
    assert ExportDelay(5, 5).draw(rng) == 5
    with pytest.raises(ValueError):
        ExportDelay(60, 30)


async def test_an_export_delay_holds_each_message_back_until_it_is_exported():
    account = BatchAccount(keep_service_log=True)
    account.create_job("late")
    account.add_tasks("late", [f"t{n}" for n in range(10)])
    for n in range(10):
        account.start("late", f"t{n}")
    events = account.take_log_outbox()
    slow, quick = EventHub(), EventHub()
    report = pump(events, slow, LogFaults(noise=0, export_delay=ExportDelay(60, 180)), records_per_message=2)
    assert report.messages == 5 and len(report.delays) == 5 and all(0 < delay <= 180 for delay in report.delays)
    assert not any(slow.partitions)  # nothing is in the hub before its export
    pump(events, quick, LogFaults(noise=0, export_delay=ExportDelay(0.05, 0.05)), records_per_message=2)
    for _ in range(600):  # each arrives once its 50 ms are up
        if sum(len(partition) for partition in quick.partitions) == 5:
            break
        await asyncio.sleep(0.05)
    assert sorted(json.loads(m["body"])["records"][0]["properties"]["id"] for p in quick.partitions for m in p) == [
        "t0",
        "t2",
        "t4",
        "t6",
        "t8",
    ]


@pytest.mark.usefixtures("app_settings")
async def test_a_reader_a_day_behind_raises_the_lagging_alert_before_it_applies_anything(caplog):
    from datetime import timedelta

    record = service_log_record("task_start", jobId="Log-Lag", id="t1", executionInfo={"startTime": at(1)})

    def enqueued(hours_ago: float) -> list[func.EventHubEvent]:
        when = (NOW - timedelta(hours=hours_ago)).replace(tzinfo=None)  # the trigger's times are naive UTC
        return [func.EventHubEvent(body=hub_message(record).encode(), enqueued_time=when)]

    with caplog.at_level("WARNING", logger="shared.monitoring"):
        await BatchServiceLogs.main(enqueued(hours_ago=2))
        assert not [r for r in caplog.records if "TASKCOUNTS_ALERT" in r.getMessage()]
        await BatchServiceLogs.main(enqueued(hours_ago=30))
    [alert] = [r.getMessage() for r in caplog.records if "TASKCOUNTS_ALERT" in r.getMessage()]
    body = json.loads(alert.split("TASKCOUNTS_ALERT ", 1)[1])
    assert body["alert"] == "lagging" and 29.9 <= body["hoursBehind"] <= 31


OTHER_ACCOUNT_ID = (
    "/SUBSCRIPTIONS/11111111-1111-1111-1111-111111111111/RESOURCEGROUPS/B/PROVIDERS/MICROSOFT.BATCH/BATCHACCOUNTS/TEAMB"
)


@pytest.mark.usefixtures("app_settings")
async def test_another_accounts_records_are_ignored_and_alerted_never_counted_into_a_job_of_the_same_id(caplog):
    """A second account's diagnostic setting streams to the same hub; its job has our job's id."""
    job = "Log-Shared-Id"
    ours = service_log_record("task_start", jobId=job, id="t1", executionInfo={"startTime": at(1)})
    theirs = [
        {
            **service_log_record("task_complete_success", jobId=job, id=f"t{n}", executionInfo={"endTime": at(2)}),
            "resourceId": OTHER_ACCOUNT_ID,
        }
        for n in range(1, 6)
    ]
    with caplog.at_level("WARNING", logger="shared.monitoring"):
        await BatchServiceLogs.main(hub_events(hub_message(ours, *theirs)))
    counts = (await get_store(get_settings()).get_job_counts(job.lower())).tasks.as_dict()
    assert counts == {"active": 0, "running": 1, "completed": 0, "succeeded": 0, "failed": 0}
    [alert] = [r.getMessage() for r in caplog.records if "TASKCOUNTS_ALERT" in r.getMessage()]
    body = json.loads(alert.split("TASKCOUNTS_ALERT ", 1)[1])
    assert body == {"alert": "otherAccount", "records": 5, "resourceIds": {OTHER_ACCOUNT_ID: 5}}
    kept = [row for row in await get_store(get_settings()).list_rejected(datetime.now(UTC)) if job in raw_text_of(row)]
    assert kept == []  # ignored, not rejected: nothing is wrong with them
