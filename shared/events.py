"""Task-state events on the wire -> typed, frozen events; parsed once, at the edge.

Accepted deliveries: an Event Grid schema array, a CloudEvents 1.0 batch (array) or a single
CloudEvent. Event types ``Batch.TaskStateChanged`` (data: a Batch task object plus ``jobId``,
or a Batch service-log task record) and ``Batch.TaskDeleted`` (data: ``jobId`` and ``id``;
its time is the envelope's ``eventTime``/``time``). Anything else in an element is rejected
with a reason; the rest of the delivery still counts.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.counting import (
    ID_RULE, MAX_ATTEMPT, MAX_REQUIRED_SLOTS, TaskResult, TaskState, TaskStatus, is_batch_id,
)
from shared.errors import InvalidEventError, TaskCountsError

TASK_STATE_CHANGED = "Batch.TaskStateChanged"
TASK_DELETED = "Batch.TaskDeleted"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
SUBSCRIPTION_DELETED = "Microsoft.EventGrid.SubscriptionDeletedEvent"

MAX_DELIVERY_BYTES = 1024 * 1024  # Event Grid's own limit for one delivery
MAX_FUTURE = timedelta(hours=1)  # clock skew tolerated; a far-future time would pin a task forever
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TICKS_PER_SECOND = 10_000_000

# Batch service-log operations that are task state changes (see batch-rest reference).
_SERVICE_LOG_STATES = {
    "TaskStartEvent": TaskState.RUNNING,
    "TaskCompleteEvent": TaskState.COMPLETED,
    "TaskFailEvent": TaskState.COMPLETED,
}


class InvalidDeliveryError(TaskCountsError):
    """The delivery as a whole is unusable (not JSON, not events): HTTP 400."""


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One observation of one task, as the store applies it."""

    event_id: str
    event_type: str
    job_id: str  # as given: the first-seen case is kept for display
    task_id: str
    status: TaskStatus

    @property
    def job_key(self) -> str:
        return self.job_id.lower()

    @property
    def task_key(self) -> str:
        return self.task_id.lower()


@dataclass(frozen=True, slots=True)
class Rejection:
    """An element of a delivery that cannot be applied, kept with its reason and raw text."""

    index: int
    event_id: str | None
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class Delivery:
    events: tuple[TaskEvent, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    ignored: int = 0  # Event Grid system notices that carry no task state
    validation_code: str | None = None  # set for an Event Grid subscription handshake


def parse_delivery(body: bytes, received_at: datetime) -> Delivery:
    """Parse a webhook body; raises InvalidDeliveryError when it is not a delivery at all."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InvalidDeliveryError(f"the body is not JSON: {_short(error)}") from None
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise InvalidDeliveryError("the body must be a JSON array of events or one CloudEvent object")

    for element in document:
        if isinstance(element, dict) and element.get("eventType") == SUBSCRIPTION_VALIDATION:
            code = element.get("data", {}).get("validationCode") if isinstance(element.get("data"), dict) else None
            if not isinstance(code, str) or not code:
                raise InvalidDeliveryError("a SubscriptionValidationEvent must carry data.validationCode")
            return Delivery(validation_code=code)

    events: list[TaskEvent] = []
    rejections: list[Rejection] = []
    ignored = 0
    for index, element in enumerate(document):
        try:
            event = parse_event(element, received_at)
        except InvalidEventError as error:
            rejections.append(Rejection(index, _event_id_of(element), str(error), _raw_text(element)))
            continue
        if event is None:
            ignored += 1
        else:
            events.append(event)
    return Delivery(tuple(events), tuple(rejections), ignored)


def parse_event(element: Any, received_at: datetime) -> TaskEvent | None:
    """One envelope -> a TaskEvent, None for an Event Grid notice to ignore, or InvalidEventError."""
    if not isinstance(element, dict):
        raise InvalidEventError("an event must be a JSON object")
    if "specversion" in element:
        if element["specversion"] != "1.0":
            raise InvalidEventError(f"unsupported CloudEvents specversion {element['specversion']!r}")
        event_type = _required_str(element, "type")
        envelope_time_field = "time"
        if "data_base64" in element:
            raise InvalidEventError("binary CloudEvents data (data_base64) is not supported")
        _required_str(element, "source")
    else:
        event_type = _required_str(element, "eventType")
        envelope_time_field = "eventTime"
    event_id = _required_str(element, "id")
    if event_type == SUBSCRIPTION_DELETED:
        return None
    data = element.get("data")
    if not isinstance(data, dict):
        raise InvalidEventError("data must be a JSON object")

    if event_type == TASK_STATE_CHANGED:
        if "operationName" in data:
            return _from_service_log(event_id, event_type, data, received_at)
        job_id = _validate_id(data.get("jobId"), "jobId")
        task_id, status = task_status(data, received_at)
        return TaskEvent(event_id, event_type, job_id, task_id, status)

    if event_type == TASK_DELETED:
        job_id, task_id = _ids(data)
        ticks = _ticks(element.get(envelope_time_field), envelope_time_field, received_at)
        status = TaskStatus.observed(ticks, 0, None, None, 1)
        return TaskEvent(event_id, event_type, job_id, task_id, status)

    raise InvalidEventError(
        f"unsupported event type {event_type!r}: expected {TASK_STATE_CHANGED} or {TASK_DELETED}"
    )


def task_status(task: dict, received_at: datetime) -> tuple[str, TaskStatus]:
    """A Batch task object (as List Tasks returns it) -> (task id, status); InvalidEventError."""
    task_id = _task_id(task)
    state = _state(task.get("state"))
    ticks = _ticks(task.get("stateTransitionTime"), "stateTransitionTime", received_at)
    execution = _optional_object(task, "executionInfo")
    result = _result(execution) if state is TaskState.COMPLETED else None
    return task_id, TaskStatus.observed(ticks, _attempt(execution), state, result, _required_slots(task))


def _from_service_log(event_id: str, event_type: str, record: dict, received_at: datetime) -> TaskEvent:
    operation = record.get("operationName")
    state = _SERVICE_LOG_STATES.get(operation) if isinstance(operation, str) else None
    if state is None:
        raise InvalidEventError(
            f"service-log operation {operation!r} is not a task state change "
            f"(expected one of {', '.join(_SERVICE_LOG_STATES)})"
        )
    properties = record.get("properties")
    if not isinstance(properties, dict):
        raise InvalidEventError("a service-log record must carry a properties object")
    job_id, task_id = _ids(properties)
    ticks = _ticks(record.get("time"), "data.time", received_at)
    execution = _optional_object(properties, "executionInfo")
    result = None
    if state is TaskState.COMPLETED:
        if operation == "TaskFailEvent":
            result = TaskResult.FAILURE
        else:
            exit_code = execution.get("exitCode")
            if not _is_int(exit_code):
                raise InvalidEventError("a TaskCompleteEvent must carry an integer executionInfo.exitCode")
            result = TaskResult.SUCCESS if exit_code == 0 else TaskResult.FAILURE
    status = TaskStatus.observed(ticks, _attempt(execution), state, result, _required_slots(properties))
    return TaskEvent(event_id, event_type, job_id, task_id, status)


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 timestamp with a zone; raises InvalidEventError."""
    return ticks_to_datetime(_raw_ticks(value, "timestamp"))


def ticks_to_iso(ticks: int) -> str:
    """100 ns ticks since the epoch -> ISO 8601 with Batch's 7 fractional digits."""
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    moment = _EPOCH + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:07d}Z"


def ticks_to_datetime(ticks: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ticks // 10)


def datetime_to_ticks(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10


def _validate_id(value: Any, what: str) -> str:
    """A Batch job or task id: letters, digits, '-' and '_', 1 to 64 characters."""
    if not is_batch_id(value):
        raise InvalidEventError(f"{what} must be {ID_RULE}, got {_short(value)}")
    return value


def _ids(data: dict) -> tuple[str, str]:
    return _validate_id(data.get("jobId"), "jobId"), _task_id(data)


def _task_id(data: dict) -> str:
    """``id``, or ``taskId`` as producers may call it; both present must agree."""
    if "id" in data and "taskId" in data and data["id"] != data["taskId"]:
        raise InvalidEventError("id and taskId disagree")
    return _validate_id(data.get("id", data.get("taskId")), "task id (id or taskId)")


def _state(value: Any) -> TaskState:
    try:
        return TaskState(value)
    except ValueError:
        allowed = ", ".join(state.value for state in TaskState)
        raise InvalidEventError(f"state must be one of {allowed}, got {_short(value)}") from None


def _result(execution: dict) -> TaskResult | None:
    """A completed task's result; older producers send only exitCode or failureInfo."""
    raw = execution.get("result")
    if raw is not None:
        try:
            return TaskResult(raw)
        except ValueError:
            raise InvalidEventError(f"executionInfo.result must be success or failure, got {_short(raw)}") from None
    if execution.get("failureInfo") is not None:
        return TaskResult.FAILURE
    exit_code = execution.get("exitCode")
    if _is_int(exit_code):
        return TaskResult.SUCCESS if exit_code == 0 else TaskResult.FAILURE
    return None


def _attempt(execution: dict) -> int:
    total = 0
    for name in ("retryCount", "requeueCount"):
        value = execution.get(name, 0)
        if not _is_int(value) or value < 0:
            raise InvalidEventError(f"executionInfo.{name} must be a non-negative integer, got {_short(value)}")
        total += value
    if total > MAX_ATTEMPT:
        raise InvalidEventError(f"retryCount + requeueCount must be at most {MAX_ATTEMPT}")
    return total


def _required_slots(data: dict) -> int:
    value = data.get("requiredSlots", 1)
    if not _is_int(value) or not 1 <= value <= MAX_REQUIRED_SLOTS:
        raise InvalidEventError(f"requiredSlots must be an integer from 1 to {MAX_REQUIRED_SLOTS}, got {_short(value)}")
    return value


def _ticks(value: Any, field: str, received_at: datetime) -> int:
    ticks = _raw_ticks(value, field)
    if ticks < datetime_to_ticks(EARLIEST):
        raise InvalidEventError(f"{field} is before {EARLIEST.year}")
    if ticks > datetime_to_ticks(received_at + MAX_FUTURE):
        raise InvalidEventError(f"{field} is more than {MAX_FUTURE} in the future")
    return ticks


def _raw_ticks(value: Any, field: str) -> int:
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidEventError(
            f"{field} must be an ISO 8601 timestamp with a zone (e.g. 2025-01-01T00:00:00.0000000Z), got {_short(value)}"
        )
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)
    except ValueError as error:
        raise InvalidEventError(f"{field} is not a real time: {error}") from None
    if not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        moment = moment - offset if sign == "+" else moment + offset
    return datetime_to_ticks(moment) + int((fraction or "").ljust(7, "0")[:7])


def _required_str(element: dict, name: str) -> str:
    value = element.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEventError(f"{name} is required and must be a non-empty string")
    return value


def _optional_object(data: dict, name: str) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEventError(f"{name} must be a JSON object")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _event_id_of(element: Any) -> str | None:
    value = element.get("id") if isinstance(element, dict) else None
    return value[:256] if isinstance(value, str) else None


def _raw_text(element: Any) -> str:
    return json.dumps(element, separators=(",", ":"), ensure_ascii=False)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
