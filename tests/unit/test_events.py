import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.counting import Counts, TaskResult, TaskState
from shared.eventgrid import InvalidDeliveryError, parse_delivery
from shared.events import TASK_DELETED, parse_timestamp, ticks_to_iso
from tests.sample_files import (
    cloud_event,
    event_grid,
    sample_bytes,
    service_log_record,
    task_data,
    validation_handshake,
)

NOW = datetime(2025, 6, 1, 12, 30, tzinfo=UTC)


def parse(document):
    return parse_delivery(json.dumps(document).encode(), NOW)


def test_event_grid_sample_parses_to_typed_events():
    delivery = parse_delivery(sample_bytes("eventgrid_batch.json"), NOW)
    assert delivery.rejections == ()
    completed, deleted = delivery.events
    assert (completed.job_id, completed.job_key, completed.task_key) == ("Render-42", "render-42", "frame-0001")
    assert completed.status.state is TaskState.COMPLETED and completed.status.result is TaskResult.SUCCESS
    assert completed.status.slot_counts() == Counts(completed=2, succeeded=2)
    assert deleted.event_type == TASK_DELETED and deleted.status.deleted


def test_cloudevents_sample_with_task_id_and_service_log_record():
    delivery = parse_delivery(sample_bytes("cloudevents_batch.json"), NOW)
    assert delivery.rejections == ()
    running, completed = delivery.events
    assert running.task_id == "frame-0003" and running.status.state is TaskState.RUNNING
    assert completed.task_id == "frame-0004"
    assert completed.status.state is TaskState.COMPLETED
    assert completed.status.result is TaskResult.FAILURE  # exitCode 3
    assert completed.status.version.startswith(f"{17487792095000000:019d}-000001")


def test_single_cloudevent_object_is_a_delivery_of_one():
    document = cloud_event(task_data())
    assert len(parse(document).events) == 1


def test_validation_handshake_is_recognised():
    document = [validation_handshake("512d38b6-c7b8-40c8-89fe-f46f9e9622b6")]
    assert parse(document).handshake_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"


def test_subscription_deleted_notice_is_ignored_not_rejected():
    delivery = parse([{"id": "d", "eventType": "Microsoft.EventGrid.SubscriptionDeletedEvent", "data": {}}])
    assert (delivery.events, delivery.rejections, delivery.ignored) == ((), (), 1)


@pytest.mark.parametrize("body", [b"not json", b'{"a":', b"42", b'"text"', b"[" * 100_000 + b"]" * 100_000])
def test_bodies_that_are_not_deliveries(body):
    with pytest.raises(InvalidDeliveryError):
        parse_delivery(body, NOW)


@pytest.mark.parametrize(
    "element,reason",
    [
        (event_grid(task_data(state="deleted")), "state must be one of"),
        (event_grid(task_data(state=None)), "state must be one of"),
        (event_grid(task_data(jobId="bad/id")), "jobId must be"),
        (event_grid(task_data(jobId="x" * 65)), "jobId must be"),
        (event_grid(task_data(jobId="a' or PartitionKey eq 'b")), "jobId must be"),
        (event_grid(task_data(id="t#1")), "task id"),
        (event_grid({**task_data(), "id": "a", "taskId": "b"}), "disagree"),
        (event_grid(task_data(stateTransitionTime="yesterday")), "ISO 8601"),
        (event_grid(task_data(stateTransitionTime="2025-06-01T12:00:00")), "with a zone"),
        (event_grid(task_data(stateTransitionTime="2025-02-30T12:00:00Z")), "not a real time"),
        (event_grid(task_data(stateTransitionTime="2999-01-01T00:00:00Z")), "in the future"),
        (event_grid(task_data(stateTransitionTime="1999-12-31T23:59:59Z")), "before 2000"),
        (event_grid(task_data(requiredSlots=0)), "requiredSlots"),
        (event_grid(task_data(requiredSlots="2")), "requiredSlots"),
        (event_grid(task_data(state="completed", executionInfo={"result": "maybe"})), "result must be"),
        (event_grid(task_data(executionInfo={"retryCount": -1})), "retryCount"),
        (event_grid(task_data(executionInfo={"retryCount": True})), "retryCount"),
        (event_grid(task_data(executionInfo=[])), "executionInfo must be"),
        (event_grid("a string"), "data must be"),
        (event_grid(task_data(), eventType="Batch.JobDeleted"), "unsupported event type"),
        (event_grid(task_data(), id=7), "id is required"),
        (cloud_event(task_data(), specversion="0.3"), "specversion"),
        (cloud_event(data_base64="AA=="), "binary"),
        ({k: v for k, v in cloud_event(task_data()).items() if k != "source"}, "source is required"),
        (event_grid(service_log_record("task_complete_success", executionInfo={"exitCode": "0"})), "exitCode"),
        ({"id": "d", "eventType": "Batch.TaskDeleted", "data": {"jobId": "j", "id": "t"}}, "eventTime"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(element, reason):
    good = event_grid(task_data(id="good"))
    delivery = parse([good, element])
    assert [event.task_id for event in delivery.events] == ["good"]
    [rejection] = delivery.rejections
    assert reason in rejection.reason
    assert rejection.index == 1
    assert json.loads(rejection.raw) == element


def test_completed_without_result_falls_back_to_exit_code_and_failure_info():
    success = parse([event_grid(task_data(state="completed", executionInfo={"exitCode": 0}))]).events[0]
    failure = parse([event_grid(task_data(state="completed", executionInfo={"failureInfo": {"code": "X"}}))]).events[0]
    assert success.status.result is TaskResult.SUCCESS and failure.status.result is TaskResult.FAILURE


def test_timestamps_keep_seven_digits_and_honour_offsets():
    a = parse([event_grid(task_data(stateTransitionTime="2025-06-01T12:00:00.1234567Z"))]).events[0]
    b = parse([event_grid(task_data(stateTransitionTime="2025-06-01T14:00:00.1234568+02:00"))]).events[0]
    assert b.status.version > a.status.version
    assert ticks_to_iso(int(a.status.version[:19])) == "2025-06-01T12:00:00.1234567Z"
    assert parse_timestamp("2025-06-01T12:00:00Z") == datetime(2025, 6, 1, 12, tzinfo=UTC)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2025, 6, 1)),
    st.integers(0, 9_999_999),
    st.integers(-14 * 60, 14 * 60),
    st.sampled_from(["", "x", "١", " "]),
)
def test_batchs_own_timestamp_form_reads_as_any_other_form_of_the_same_instant(moment, fraction, offset_minutes, junk):
    """Batch's seven-digit Z form is read (and written) by a shortcut; it must agree with the general reading, and
    anything not exactly that form (a stray character, a non-ASCII digit) takes the general path."""
    from datetime import timedelta

    from shared.events import MalformedEventError, ticks_of

    utc = moment.replace(microsecond=0, tzinfo=UTC)
    batch_form = utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:07d}Z"
    local = utc + timedelta(minutes=offset_minutes)
    sign, minutes = ("+" if offset_minutes >= 0 else "-"), abs(offset_minutes)
    offset_form = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:07d}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    assert ticks_of(batch_form, "t", NOW) == ticks_of(offset_form, "t", NOW)
    assert ticks_to_iso(ticks_of(offset_form, "t", NOW)) == batch_form  # and written back in Batch's form
    if junk:
        altered = batch_form[:22] + junk + batch_form[23:] if len(junk) == 1 else batch_form
        with pytest.raises(MalformedEventError):
            ticks_of(altered, "t", NOW)


@settings(max_examples=300)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
        max_leaves=20,
    )
)
def test_parser_never_raises_anything_but_its_own_errors(document):
    try:
        delivery = parse(document)
    except InvalidDeliveryError:
        return
    assert len(delivery.events) + len(delivery.rejections) + delivery.ignored <= max(
        1, len(document) if isinstance(document, list) else 1
    )


def test_a_listing_reads_every_task_it_can_and_counts_the_rest():
    from shared.events import read_listing
    from tests.sample_files import task_data

    now = datetime(2026, 12, 4, tzinfo=UTC)
    good = task_data(id="t1", stateTransitionTime="2026-12-01T00:00:00Z")
    bad = [task_data(id="t/2"), task_data(id="t3", state="sleeping"), {"id": "t4"}]
    read, invalid = read_listing([bad[0], good, *bad[1:]], now, "job-1")
    assert [(raw["id"], task_id) for raw, task_id, _ in read] == [("t1", "t1")] and invalid == 3
