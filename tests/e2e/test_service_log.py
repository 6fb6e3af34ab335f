"""A real Batch account's way in, end to end through processes: the simulator writes its service
log to its hub (several records per message, duplicates, reordering, loss, special-task and pool
records), the local host runs BatchServiceLogs from it and SyncTasks on its timer, and no Event
Grid producer exists. Counts must reach the truth; storage faults mid-invocation must be retried,
never double counted."""

import time
from datetime import UTC, datetime

import pytest
import requests
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from shared.accounts import Accounts, BatchAccount
from shared.counting import Counts, newest_per_task
from shared.servicelog import parse_messages
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY
from tools.stack import READ_KEY, SERVICE_LOG_HUB, Stack

pytestmark = pytest.mark.e2e
KEYED = {"x-functions-key": READ_KEY}
FAULTS = (0.3, 0.3)  # storage calls failed before / after Azurite did the work (the store resends most;
# since writes keep their rows, an invocation makes fewer calls: at 0.2 some runs saw no invocation fail)
NAMES = ("active", "running", "completed", "succeeded", "failed")


def served(stack, job):
    response = requests.get(f"{stack.app_url}/api/jobs/{job}/taskcounts", headers=KEYED, timeout=10)
    return response.json()["taskCounts"] if response.status_code == 200 else None


def truth(stack, job):
    counts = (
        BatchClient(stack.simulator_url, AzureNamedKeyCredential(DEFAULT_ACCOUNT, DEFAULT_KEY))
        .get_job_task_counts(job)
        .task_counts
    )
    return {name: getattr(counts, name) for name in NAMES}


def wait_for(check, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def test_counted_exactly_from_the_service_log_and_the_delta_sync_alone():
    job = "Log-Render"
    with Stack(validation_schedule="0 0 0 1 1 *", task_sync_schedule="*/2 * * * * *") as stack:
        stack.control("jobs", {"id": job, "tasks": 3000, "publish": False})
        # added tasks: no log record exists for them; only the sync can show them
        assert wait_for(lambda: served(stack, job) == truth(stack, job), 30), (served(stack, job), truth(stack, job))
        log_reports = []
        for seed in range(1, 6):
            # starts, completions (some failing, some before running), retries, requeues,
            # scheduling failures, reactivations; no deletions (no log or listing shows those)
            stack.control(f"jobs/{job}/step", {"moves": 2500, "seed": seed, "deletes": False})
            log_reports.append(
                stack.control(
                    "servicelog",
                    {
                        "hub": SERVICE_LOG_HUB,
                        "recordsPerMessage": 40,
                        "drop": 0.05,
                        "duplicate": 0.1,
                        "reorder": True,
                        "noise": 0.1,
                        "seed": seed,
                    },
                )
            )
        assert wait_for(lambda: served(stack, job) == truth(stack, job), 60), (served(stack, job), truth(stack, job))
        stack.control(f"jobs/{job}/finish", {"seed": 9})
        log_reports.append(
            stack.control("servicelog", {"hub": SERVICE_LOG_HUB, "duplicate": 0.1, "reorder": True, "seed": 9})
        )
        assert wait_for(lambda: served(stack, job) == truth(stack, job), 60), (served(stack, job), truth(stack, job))
        host_log = stack.log_text("funchost")
    records = sum(report["records"] for report in log_reports)
    assert records > 5000 and sum(r["dropped"] for r in log_reports) > 0 and sum(r["noise"] for r in log_reports) > 0
    assert "service-log messages applied" in host_log and "sync run" in host_log


def test_storage_faults_mid_invocation_are_retried_and_never_double_counted():
    job = "Log-Chaos"
    with Stack(validation_schedule="0 0 0 1 1 *", task_sync_schedule=None, storage_faults=FAULTS) as stack:
        stack.control("jobs", {"id": job, "tasks": 2000, "publish": False})
        for seed in range(1, 4):
            stack.control(f"jobs/{job}/step", {"moves": 2000, "seed": seed})
        report = stack.control(
            "servicelog",
            {
                "hub": SERVICE_LOG_HUB,
                "recordsPerMessage": 5,
                "duplicate": 0.2,
                "reorder": True,
                "noise": 0.1,
                "seed": 4,
            },
        )
        # what the log says, folded by the counting rules: the counts the log alone must produce
        bodies = [
            message["body"]
            for partition in (0, 1)
            for message in requests.get(
                f"{stack.simulator_url}/eventhubs/{SERVICE_LOG_HUB}/partitions/{partition}/messages",
                params={"from": 0, "max": 100_000},
                timeout=30,
            ).json()["messages"]
        ]
        delivery = parse_messages(bodies, datetime.now(UTC), Accounts((BatchAccount(DEFAULT_ACCOUNT),)))
        newest = newest_per_task((event.task_key, event.status) for event in delivery.events)
        expected = Counts.total(status.task_counts() for status in newest.values()).as_dict()

        # a read under faults may answer 503 (as it should): served() is then None and the wait goes on
        reached = wait_for(lambda: served(stack, job) == expected, 90)
        host_log = stack.log_text("funchost")
    assert report["messages"] > 50 and report["duplicated"] > 0
    assert "running it again" in host_log, "no invocation failed under storage faults: raise the fault rate"
    assert reached, "the log's counts were not reached"


def test_the_demo_counts_a_job_from_each_source_side_by_side(capsys):
    """A new user's check: ./dev demo ends with the counts from Event Grid and from the service log + sync
    each matching the truth."""
    from tools import demo

    assert demo.main(["--tasks", "1500", "--drop", "0.05", "--duplicate", "0.1"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps lines at the terminal's width
    assert "Event Grid: validation Completed" in out and "service log + sync: validation Completed" in out
    assert out.count("final counts MATCH the truth") == 2
    assert "posting an event answers HTTP 401 and starting a validation HTTP 401, and the counts did not change" in out
