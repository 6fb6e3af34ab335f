"""Task observations as typed, frozen events, and the field rules every wire format shares.

Three wire formats arrive: Event Grid / CloudEvents deliveries (``shared.eventgrid``), Batch's own
service log through Event Hubs (``shared.servicelog``), and Batch task objects from List Tasks
(``task_status`` here, used by the delta sync and validation). Each is parsed once, at the edge,
into the ``TaskEvent`` below; a malformed element raises MalformedEventError with the reason that
is kept with it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from shared.accounts import job_key_of
from shared.counting import (
    ID_RULE,
    MAX_ATTEMPT,
    MAX_REQUIRED_SLOTS,
    RESULT_OF_VALUE,
    STATE_OF_VALUE,
    TaskResult,
    TaskState,
    TaskStatus,
    is_batch_id,
)
from shared.errors import MalformedEventError

logger = logging.getLogger(__name__)

TASK_STATE_CHANGED = "Batch.TaskStateChanged"
TASK_DELETED = "Batch.TaskDeleted"

MAX_FUTURE = timedelta(hours=1)  # clock skew tolerated; a far-future time would pin a task forever
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))",
    re.ASCII,  # ASCII digits only, as ISO 8601 (and the shortcut in _raw_ticks) read them
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST_TICKS = (EARLIEST - _EPOCH) // timedelta(microseconds=1) * 10
TICKS_PER_SECOND = 10_000_000


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One observation of one task, as the store applies it."""

    event_id: str
    event_type: str
    job_id: str  # as given: the first-seen case is kept for display
    task_id: str
    status: TaskStatus
    account: str | None = None  # the Batch account's name; None: the default account

    @property
    def job_key(self) -> str:
        return job_key_of(self.account, self.job_id)

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
    ignored: int = 0  # elements that carry no job task's state (Event Grid notices, pool records, ...)
    handshake_code: str | None = None  # set for an Event Grid subscription handshake
    # Service-log records of accounts this deployment does not count, per resourceId: ignored
    other_accounts: dict[str, int] = field(default_factory=dict)


def task_status(task: dict, received_at: datetime) -> tuple[str, TaskStatus]:
    """A Batch task object (as List Tasks returns it) -> (task id, status); MalformedEventError."""
    task_id = task_id_of(task)
    state = state_of(task.get("state"))
    ticks = ticks_of(task.get("stateTransitionTime"), "stateTransitionTime", received_at)
    execution = optional_object(task, "executionInfo")
    result = result_of(execution) if state is TaskState.COMPLETED else None
    return task_id, TaskStatus.observed(ticks, attempt_of(execution), state, result, required_slots_of(task))


def read_listing(
    tasks: list[dict], received_at: datetime, job_id: str
) -> tuple[list[tuple[dict, str, TaskStatus]], int]:
    """A List Tasks page's tasks as (task object, id, status), and how many did not read as a task:
    those are logged and skipped, never raised (one bad task must not stop a listing). The one loop
    the sync and validation read listings with."""
    read, invalid = [], 0
    for task in tasks:
        try:
            read.append((task, *task_status(task, received_at)))
        except MalformedEventError as error:
            invalid += 1
            logger.warning("listed task skipped: %s", error, extra={"job_id": job_id, "task_id": task.get("id")})
    return read, invalid


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 timestamp with a zone; raises MalformedEventError."""
    return ticks_to_datetime(_raw_ticks(value, "timestamp"))


def ticks_to_iso(ticks: int) -> str:
    """100 ns ticks since the epoch -> ISO 8601 with Batch's 7 fractional digits."""
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    return f"{_second_iso(seconds)}.{fraction:07d}Z"


@lru_cache(maxsize=4096)  # strftime is slow, and a listing's tasks share few seconds
def _second_iso(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def ticks_to_datetime(ticks: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ticks // 10)


def datetime_to_ticks(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10


def batch_id(value: Any, what: str) -> str:
    """A Batch job or task id: letters, digits, '-' and '_', 1 to 64 characters."""
    if not is_batch_id(value):
        raise MalformedEventError(f"{what} must be {ID_RULE}, got {short(value)}")
    return value


def job_and_task_ids(data: dict) -> tuple[str, str]:
    return batch_id(data.get("jobId"), "jobId"), task_id_of(data)


def task_id_of(data: dict) -> str:
    """``id``, or ``taskId`` as producers may call it; both present must agree."""
    if "id" in data and "taskId" in data and data["id"] != data["taskId"]:
        raise MalformedEventError("id and taskId disagree")
    return batch_id(data.get("id", data.get("taskId")), "task id (id or taskId)")


def state_of(value: Any) -> TaskState:
    state = STATE_OF_VALUE.get(value) if isinstance(value, str) else None
    if state is None:
        allowed = ", ".join(state.value for state in TaskState)
        raise MalformedEventError(f"state must be one of {allowed}, got {short(value)}")
    return state


def result_of(execution: dict) -> TaskResult | None:
    """A completed task's result; older producers send only exitCode or failureInfo."""
    raw = execution.get("result")
    if raw is not None:
        # any case: the REST API says "success", Batch's service log "Success"
        result = RESULT_OF_VALUE.get(raw.lower()) if isinstance(raw, str) else None
        if result is None:
            raise MalformedEventError(f"executionInfo.result must be success or failure, got {short(raw)}")
        return result
    if execution.get("failureInfo") is not None:
        return TaskResult.FAILURE
    exit_code = execution.get("exitCode")
    if is_int(exit_code):
        return TaskResult.SUCCESS if exit_code == 0 else TaskResult.FAILURE
    return None


def attempt_of(execution: dict) -> int:
    total = 0
    for name in ("retryCount", "requeueCount"):
        value = execution.get(name, 0)
        if not is_int(value) or value < 0:
            raise MalformedEventError(f"executionInfo.{name} must be a non-negative integer, got {short(value)}")
        total += value
    if total > MAX_ATTEMPT:
        raise MalformedEventError(f"retryCount + requeueCount must be at most {MAX_ATTEMPT}")
    return total


def required_slots_of(data: dict) -> int:
    value = data.get("requiredSlots", 1)
    if not is_int(value) or not 1 <= value <= MAX_REQUIRED_SLOTS:
        raise MalformedEventError(
            f"requiredSlots must be an integer from 1 to {MAX_REQUIRED_SLOTS}, got {short(value)}"
        )
    return value


def ticks_of(value: Any, field: str, received_at: datetime) -> int:
    ticks = _raw_ticks(value, field)
    if ticks < _EARLIEST_TICKS:
        raise MalformedEventError(f"{field} is before {EARLIEST.year}")
    if ticks > _latest_ticks(received_at):
        raise MalformedEventError(f"{field} is more than {MAX_FUTURE} in the future")
    return ticks


@lru_cache(maxsize=16)
def _latest_ticks(received_at: datetime) -> int:
    return datetime_to_ticks(received_at + MAX_FUTURE)


def _raw_ticks(value: Any, field: str) -> int:
    # Batch's own form (seven fractional digits, Z), most of a listing's and a delivery's timestamps:
    # its second is looked up, the rest is one int().
    if (
        isinstance(value, str)
        and len(value) == 28
        and value[19] == "."
        and value[27] in "Zz"
        and (fraction := value[20:27]).isascii()
        and fraction.isdigit()
    ):
        return _second_ticks_of(value[:19], field) + int(fraction)
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise MalformedEventError(
            f"{field} must be an ISO 8601 timestamp with a zone (e.g. 2025-01-01T00:00:00.0000000Z), got {short(value)}"
        )
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError as error:
        raise MalformedEventError(f"{field} is not a real time: {error}") from None
    if not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        moment = moment - offset if sign == "+" else moment + offset
    return datetime_to_ticks(moment) + int((fraction or "").ljust(7, "0")[:7])


@lru_cache(maxsize=4096)  # a page of 1,000 tasks, or a delivery, has few distinct seconds
def _second_ticks_of(moment: str, field: str) -> int:
    return _raw_ticks(moment + "Z", field)


def required_str(element: dict, name: str) -> str:
    value = element.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEventError(f"{name} is required and must be a non-empty string")
    return value


def optional_object(data: dict, name: str) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedEventError(f"{name} must be a JSON object")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def event_id_of(element: Any) -> str | None:
    value = element.get("id") if isinstance(element, dict) else None
    return value[:256] if isinstance(value, str) else None


def raw_text(element: Any) -> str:
    return json.dumps(element, separators=(",", ":"), ensure_ascii=False)


def short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
