"""Batch's service log -> typed events: every documented record kind, the version rule, and bad
records kept with a reason (never raised)."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.accounts import AccountId, Accounts, BatchAccount
from shared.counting import TaskResult, TaskState
from shared.eventgrid import parse_delivery
from shared.servicelog import parse_messages, parse_record, record_id
from tests.sample_files import SAMPLE_ACCOUNTS, SERVICE_LOG_KINDS, event_grid, hub_message, service_log_record

NOW = datetime(2025, 6, 1, 12, 30, tzinfo=UTC)
SAMPLE_ACCOUNT_ID = service_log_record("task_start")["resourceId"]


@pytest.mark.parametrize(
    "kind,state,result",
    [
        ("task_start", TaskState.RUNNING, None),
        ("task_complete_success", TaskState.COMPLETED, TaskResult.SUCCESS),
        ("task_complete_failure", TaskState.COMPLETED, TaskResult.FAILURE),
        ("task_complete_before_run", TaskState.COMPLETED, TaskResult.FAILURE),
        ("task_fail", TaskState.COMPLETED, TaskResult.FAILURE),
        ("task_requeue", TaskState.ACTIVE, None),
        ("task_schedule_fail", TaskState.ACTIVE, None),
    ],
)
def test_each_documented_task_record_means_a_state(kind, state, result):
    event = parse_record(service_log_record(kind), NOW)
    assert (event.job_id, event.task_id, event.event_type) == (
        "Render-42",
        "frame-0007",
        service_log_record(kind)["operationName"],
    )
    assert (event.status.state, event.status.result, event.status.required_slots) == (state, result, 2)


@pytest.mark.parametrize("kind", ["special_task_start", "pool_resize_complete"])
def test_special_tasks_and_pool_records_are_ignored_not_rejected(kind):
    assert parse_record(service_log_record(kind), NOW) is None
    message = hub_message(service_log_record(kind), service_log_record("task_start"))
    delivery = parse_messages([message], NOW, SAMPLE_ACCOUNTS)
    assert (len(delivery.events), len(delivery.rejections), delivery.ignored) == (1, 0, 1)


def test_other_categories_and_task_types_are_ignored():
    audit = {**service_log_record("task_start"), "category": "AuditLog"}
    release = service_log_record("task_complete_success", taskType="JobRelease")
    assert parse_record(audit, NOW) is None and parse_record(release, NOW) is None
    assert parse_record(service_log_record("task_start", taskType="JobManager"), NOW) is not None
    assert parse_record({**service_log_record("task_start"), "category": "ServiceLogs"}, NOW) is not None


def test_result_wins_over_exit_code_in_any_case():
    # an exit code the job's exit conditions treat as success
    record = service_log_record("task_complete_failure", executionInfo={"exitCode": 3, "result": "SUCCESS"})
    assert parse_record(record, NOW).status.result is TaskResult.SUCCESS
    no_result = service_log_record("task_complete_success", executionInfo={"result": None, "exitCode": 0})
    assert parse_record(no_result, NOW).status.result is TaskResult.SUCCESS
    null_exit = service_log_record("task_complete_success", executionInfo={"result": None, "exitCode": None})
    assert parse_record(null_exit, NOW).status.result is TaskResult.FAILURE


def test_a_record_is_dated_by_the_tasks_own_time_where_it_has_one():
    start = parse_record(service_log_record("task_start"), NOW)
    complete = parse_record(service_log_record("task_complete_success"), NOW)
    requeue = parse_record(service_log_record("task_requeue"), NOW)
    assert start.status.version[:19] == f"{17487792050000000:019d}"  # executionInfo.startTime, not time
    assert complete.status.version[:19] == f"{17487792600000000:019d}"  # executionInfo.endTime
    assert requeue.status.version[:19] == f"{17487792300000000:019d}"  # the record's time
    without = service_log_record("task_start")
    del without["properties"]["executionInfo"]["startTime"]
    assert parse_record(without, NOW).status.version[:19] == f"{17487792051000000:019d}"


def test_complete_and_fail_of_one_failure_are_one_version():
    complete = parse_record(service_log_record("task_complete_failure"), NOW)
    fail = parse_record(service_log_record("task_fail"), NOW)
    assert complete.status == fail.status


def test_a_record_and_a_listing_of_the_same_completion_agree():
    from shared.events import task_status

    record = parse_record(service_log_record("task_complete_failure"), NOW)
    listed = {
        "id": "frame-0007",
        "state": "completed",
        "stateTransitionTime": "2025-06-01T12:01:00.0000000Z",
        "requiredSlots": 2,
        "executionInfo": {"result": "failure", "exitCode": 3, "retryCount": 1, "requeueCount": 0},
    }
    assert task_status(listed, NOW)[1] == record.status


def test_properties_may_be_a_json_string():
    record = service_log_record("task_start")
    as_string = {**record, "properties": json.dumps(record["properties"])}
    assert parse_record(as_string, NOW).status == parse_record(record, NOW).status


def test_duplicates_share_an_id_and_distinct_records_do_not():
    assert record_id(service_log_record("task_start")) == record_id(service_log_record("task_start"))
    assert record_id(service_log_record("task_start")) != record_id(service_log_record("task_requeue"))


@pytest.mark.parametrize(
    "record,reason",
    [
        (
            {"time": "2025-06-01T12:00:00Z", "resourceId": SAMPLE_ACCOUNT_ID, "properties": {}},
            "operationName is required",
        ),
        (service_log_record("task_start", jobId="bad/id"), "jobId must be"),
        (service_log_record("task_start", id=None), "task id"),
        ({**service_log_record("task_start"), "properties": "{not json"}, "not JSON"),
        ({**service_log_record("task_start"), "properties": [1]}, "properties object"),
        ({**service_log_record("task_requeue"), "time": "yesterday"}, "time must be an ISO 8601"),
        (service_log_record("task_start", executionInfo={"startTime": "2999-01-01T00:00:00Z"}), "in the future"),
        (service_log_record("task_complete_success", executionInfo={"exitCode": "0"}), "exitCode must be an integer"),
        (service_log_record("task_complete_success", executionInfo={"result": "maybe"}), "result must be"),
        (service_log_record("task_start", executionInfo={"retryCount": -1}), "retryCount"),
        (service_log_record("task_start", requiredSlots=0), "requiredSlots"),
        ("a string", "must be a JSON object"),
    ],
)
def test_bad_records_are_kept_with_a_reason_and_the_rest_still_count(record, reason):
    delivery = parse_messages([hub_message(service_log_record("task_start"), record)], NOW, SAMPLE_ACCOUNTS)
    assert len(delivery.events) == 1
    [rejection] = delivery.rejections
    assert reason in rejection.reason and rejection.index == 1
    assert json.loads(rejection.raw) == record


@pytest.mark.parametrize("body", ["not json", "[]", '{"value": []}', '{"records": {}}', b"\xff\xfe"])
def test_a_message_that_is_not_a_records_envelope_is_one_rejection(body):
    delivery = parse_messages([body, hub_message(service_log_record("task_fail"))], NOW, SAMPLE_ACCOUNTS)
    assert len(delivery.events) == 1
    [rejection] = delivery.rejections
    assert rejection.index == 0 and "Event Hubs message" in rejection.reason


def test_a_record_forwarded_through_event_grid_is_parsed_the_same_way():
    for kind in SERVICE_LOG_KINDS:
        record = service_log_record(kind)
        delivery = parse_delivery(json.dumps([event_grid(record, event_id=f"eg-{kind}")]).encode(), NOW)
        direct = parse_record(record, NOW)
        if direct is None:
            assert delivery.ignored == 1 and not delivery.events and not delivery.rejections
        else:
            [event] = delivery.events
            assert event.status == direct.status and event.event_id == f"eg-{kind}"


@settings(max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "records",
                        "operationName",
                        "properties",
                        "time",
                        "jobId",
                        "id",
                        "executionInfo",
                        "taskType",
                        "category",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=25,
    )
)
def test_the_parser_never_raises(document):
    delivery = parse_messages([json.dumps(document)], NOW, SAMPLE_ACCOUNTS)
    records = document.get("records") if isinstance(document, dict) else None
    expected = len(records) if isinstance(records, list) else 1  # every record accounted for, or one bad message
    assert len(delivery.events) + len(delivery.rejections) + delivery.ignored == expected


OTHER = (
    "/SUBSCRIPTIONS/11111111-1111-1111-1111-111111111111/RESOURCEGROUPS/TEAM-B"
    "/PROVIDERS/MICROSOFT.BATCH/BATCHACCOUNTS/TEAMB"
)


def test_records_of_an_account_not_configured_are_ignored_and_counted_per_account():
    """A second account's diagnostic setting pointed at the same hub: its records share job ids with
    the counted account's, and must never be counted into them."""
    ours = service_log_record("task_start", jobId="Render", id="t1")
    theirs = [{**service_log_record("task_start", jobId="Render", id=f"t{n}"), "resourceId": OTHER} for n in range(3)]
    pool = {**service_log_record("pool_resize_complete"), "resourceId": OTHER}
    delivery = parse_messages([hub_message(ours, *theirs, pool)], NOW, SAMPLE_ACCOUNTS)
    assert [event.task_id for event in delivery.events] == ["t1"]
    assert delivery.other_accounts == {OTHER: 4} and not delivery.rejections and delivery.ignored == 0


def test_an_account_configured_by_its_arm_id_counts_only_that_account_whatever_its_name():
    """Two accounts of one name in two subscriptions: the ARM id tells them apart."""
    same_name = OTHER.replace("/TEAMB", "/SIMACCOUNT")
    ours = service_log_record("task_start", jobId="Render", id="t1")
    account = Accounts((BatchAccount("simaccount", AccountId.parse(ours["resourceId"])),))
    delivery = parse_messages([hub_message(ours, {**ours, "resourceId": same_name})], NOW, account)
    assert len(delivery.events) == 1 and delivery.other_accounts == {same_name: 1}
    assert parse_messages([hub_message(ours)], NOW, Accounts()).other_accounts == {ours["resourceId"]: 1}


@pytest.mark.parametrize(
    "resource_id",
    [None, "", 42, "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.STORAGE/STORAGEACCOUNTS/X", "CONTOSO"],
)
def test_a_record_without_a_batch_accounts_arm_id_is_kept_with_its_reason(resource_id):
    record = {**service_log_record("task_start"), "resourceId": resource_id}
    if resource_id is None:
        del record["resourceId"]
    delivery = parse_messages([hub_message(record, service_log_record("task_fail"))], NOW, SAMPLE_ACCOUNTS)
    [rejection] = delivery.rejections
    assert "resourceId" in rejection.reason and len(delivery.events) == 1


def test_records_of_two_configured_accounts_become_events_of_jobs_apart():
    """Each account's job "Render" is its own job: the default account's keeps the key it always had."""
    ours = service_log_record("task_start", jobId="Render", id="t1")
    theirs = {**service_log_record("task_start", jobId="Render", id="t1"), "resourceId": OTHER}
    accounts = Accounts((*SAMPLE_ACCOUNTS.accounts, BatchAccount("teamb", AccountId.parse(OTHER))))
    delivery = parse_messages([hub_message(ours, theirs)], NOW, accounts)
    keys = [(event.account, event.job_key) for event in delivery.events]
    assert keys == [(None, "render"), ("teamb", "teamb~render")]
    assert delivery.other_accounts == {}
