"""Batch's own service log (diagnostic category ``ServiceLog``) -> typed task events.

Azure Monitor streams the log to Event Hubs. A message is ``{"records": [record, ...]}``; a record
is ``{time, resourceId, category, operationName, operationVersion, properties}`` with
``properties`` an object (or, tolerated, the same object as a JSON string).

What a record means for the counts:

=====================  ==========================================================================
TaskStartEvent         running (a preparing task is counted as running too)
TaskCompleteEvent      completed; its ``result`` (any case), else its exit code; a null exit code
                       (failed before it ran) is a failure
TaskFailEvent          completed, failure (sent in addition to a TaskCompleteEvent)
TaskRequeueEvent       active again (a new attempt follows)
TaskScheduleFailEvent  active (scheduling is retried)
anything else          ignored, not rejected: pool and node records, special tasks (job
                       preparation / release, start task: ``taskType`` other than User or
                       JobManager, or ``taskName`` instead of ``id``), other log categories
=====================  ==========================================================================

The version of a record (``shared.counting``: time, then attempt, then lifecycle rank) uses
the task's own time where the record has it: ``executionInfo.startTime`` for a start and
``executionInfo.endTime`` for a completion -- the times Batch also reports as the task's
``stateTransitionTime`` in List Tasks -- and the record's ``time`` otherwise. So a record and a
listing of the same transition agree on when it happened, and a late record of an earlier
attempt loses to anything newer, whatever the arrival order. A TaskStartEvent carries only
``retryCount``: its attempt counts retries alone, so at an equal time the listing of the same
start (retries + requeues) wins the tie, with the same state. A TaskCompleteEvent and a
TaskFailEvent of the same failure carry the same end time, attempt and result: one version.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.accounts import Accounts, MalformedResourceIdError
from shared.counting import TaskResult, TaskState, TaskStatus
from shared.errors import MalformedEventError
from shared.events import (
    Delivery,
    Rejection,
    TaskEvent,
    attempt_of,
    is_int,
    job_and_task_ids,
    optional_object,
    raw_text,
    required_slots_of,
    required_str,
    result_of,
    short,
    ticks_of,
)

TASK_START = "TaskStartEvent"
TASK_COMPLETE = "TaskCompleteEvent"
TASK_FAIL = "TaskFailEvent"
TASK_REQUEUE = "TaskRequeueEvent"
TASK_SCHEDULE_FAIL = "TaskScheduleFailEvent"
TASK_OPERATIONS = (TASK_START, TASK_COMPLETE, TASK_FAIL, TASK_REQUEUE, TASK_SCHEDULE_FAIL)
LOG_CATEGORIES = ("servicelog", "servicelogs")  # the current name and the deprecated one
COUNTED_TASK_TYPES = ("user", "jobmanager")


def parse_messages(bodies: Iterable[str | bytes], received_at: datetime, accounts: Accounts) -> Delivery:
    """Event Hubs message bodies -> every record as an event, a rejection or ignored.

    A record counts only for an account in ``accounts`` (by its ``resourceId``); another account's
    records are ignored and reported in ``other_accounts``. Never raises for bad input: a message
    that is not ``{"records": [...]}`` is one rejection, a bad record (a ``resourceId`` that is no
    Batch account's included) another; the rest still count. Rejection indexes number the elements
    in order (a whole bad message counts as one element).
    """
    events: list[TaskEvent] = []
    rejections: list[Rejection] = []
    ignored = 0
    other_accounts: Counter[str] = Counter()
    index = 0
    for body in bodies:
        try:
            records = _records_of(body)
        except MalformedEventError as error:
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            rejections.append(Rejection(index, None, f"Event Hubs message: {error}", text))
            index += 1
            continue
        for record in records:
            try:
                event = _read_routed(record, received_at, accounts)
            except (MalformedEventError, MalformedResourceIdError) as error:
                rejections.append(Rejection(index, record_id(record), str(error), raw_text(record)))
            else:
                if isinstance(event, OtherAccount):
                    other_accounts[event.resource_id] += 1
                elif event is None:
                    ignored += 1
                else:
                    events.append(event)
            index += 1
    return Delivery(tuple(events), tuple(rejections), ignored, other_accounts=dict(other_accounts))


@dataclass(frozen=True)
class OtherAccount:
    """A record of an account this deployment does not count."""

    resource_id: str


def _read_routed(record: Any, received_at: datetime, accounts: Accounts) -> TaskEvent | OtherAccount | None:
    """A record of a configured account read as its event (or None); another account's set apart."""
    if not isinstance(record, dict):
        raise MalformedEventError("a service-log record must be a JSON object")
    emitter = accounts.emitter(record.get("resourceId"))
    if emitter is None:
        return OtherAccount(str(record["resourceId"]).upper())
    return parse_record(record, received_at, account=accounts.key_name(emitter))


def parse_record(
    record: Any, received_at: datetime, event_id: str | None = None, account: str | None = None
) -> TaskEvent | None:
    """One service-log record -> a TaskEvent of ``account`` (None: the default one), None when it is
    not a job task's state change, or MalformedEventError. ``event_id`` defaults to a digest of the
    record (duplicates share it)."""
    if not isinstance(record, dict):
        raise MalformedEventError("a service-log record must be a JSON object")
    operation = required_str(record, "operationName")
    category = record.get("category")
    if isinstance(category, str) and category.lower() not in LOG_CATEGORIES:
        return None
    if operation not in TASK_OPERATIONS:
        return None
    properties = _properties(record)
    task_type = properties.get("taskType")
    if (isinstance(task_type, str) and task_type.lower() not in COUNTED_TASK_TYPES) or (
        "id" not in properties and "taskId" not in properties and "taskName" in properties
    ):
        return None
    job_id, task_id = job_and_task_ids(properties)
    execution = optional_object(properties, "executionInfo")
    state, result, time_field = _meaning(operation, execution)
    if time_field is not None and execution.get(time_field) is not None:
        ticks = ticks_of(execution[time_field], f"properties.executionInfo.{time_field}", received_at)
    else:
        ticks = ticks_of(record.get("time"), "time", received_at)
    status = TaskStatus.observed(ticks, attempt_of(execution), state, result, required_slots_of(properties))
    return TaskEvent(event_id or record_id(record), operation, job_id, task_id, status, account)


def record_id(record: Any) -> str:
    """A stable id for a record that has none: the same record, redelivered, has the same id."""
    return "log-" + hashlib.sha256(raw_text(record).encode()).hexdigest()[:24]


def _meaning(operation: str, execution: dict) -> tuple[TaskState, TaskResult | None, str | None]:
    """(state, result, the executionInfo time that dates it, or None for the record's time)."""
    if operation == TASK_START:
        return TaskState.RUNNING, None, "startTime"
    if operation == TASK_FAIL:
        return TaskState.COMPLETED, TaskResult.FAILURE, "endTime"
    if operation == TASK_COMPLETE:
        exit_code = execution.get("exitCode")
        if exit_code is not None and not is_int(exit_code):
            raise MalformedEventError(f"executionInfo.exitCode must be an integer or null, got {short(exit_code)}")
        # Without a result, only exit code 0 is a success; a null exit code failed before it ran.
        return TaskState.COMPLETED, result_of(execution) or TaskResult.FAILURE, "endTime"
    return TaskState.ACTIVE, None, None  # requeued, or a scheduling failure that Batch retries


def _properties(record: dict) -> dict:
    value = record.get("properties")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise MalformedEventError("properties is a string that is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedEventError("a service-log record must carry a properties object")
    return value


def _records_of(body: str | bytes) -> list:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise MalformedEventError(f"not JSON: {short(error)}") from None
    records = document.get("records") if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise MalformedEventError('expected {"records": [...]} as a diagnostic setting sends')
    return records
