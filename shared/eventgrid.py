"""Event Grid webhook deliveries (Event Grid schema or CloudEvents 1.0) -> typed task events.

Accepted deliveries: an Event Grid schema array, a CloudEvents 1.0 batch (array) or a single
CloudEvent. Event types ``Batch.TaskStateChanged`` (data: a Batch task object plus ``jobId``,
or a Batch service-log record, parsed by ``shared.servicelog``) and ``Batch.TaskDeleted`` (data:
``jobId`` and ``id``; its time is the envelope's ``eventTime``/``time``). Anything else in an
element is rejected with a reason; the rest of the delivery still counts.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared import servicelog
from shared.counting import TaskStatus
from shared.errors import MalformedEventError, TaskCountsError
from shared.events import (
    TASK_DELETED,
    TASK_STATE_CHANGED,
    Delivery,
    Rejection,
    TaskEvent,
    batch_id,
    event_id_of,
    job_and_task_ids,
    raw_text,
    required_str,
    short,
    task_status,
    ticks_of,
)

SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
SUBSCRIPTION_DELETED = "Microsoft.EventGrid.SubscriptionDeletedEvent"
MAX_DELIVERY_BYTES = 1024 * 1024  # Event Grid's own limit for one delivery


class InvalidDeliveryError(TaskCountsError):
    """The delivery as a whole is unusable (not JSON, not events): HTTP 400."""


def parse_delivery(body: bytes, received_at: datetime) -> Delivery:
    """Parse a webhook body; raises InvalidDeliveryError when it is not a delivery at all."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InvalidDeliveryError(f"the body is not JSON: {short(error)}") from None
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise InvalidDeliveryError("the body must be a JSON array of events or one CloudEvent object")

    for element in document:
        if isinstance(element, dict) and element.get("eventType") == SUBSCRIPTION_VALIDATION:
            code = element.get("data", {}).get("validationCode") if isinstance(element.get("data"), dict) else None
            if not isinstance(code, str) or not code:
                raise InvalidDeliveryError("a SubscriptionValidationEvent must carry data.validationCode")
            return Delivery(handshake_code=code)

    events: list[TaskEvent] = []
    rejections: list[Rejection] = []
    ignored = 0
    for index, element in enumerate(document):
        try:
            event = parse_event(element, received_at)
        except MalformedEventError as error:
            rejections.append(Rejection(index, event_id_of(element), str(error), raw_text(element)))
            continue
        if event is None:
            ignored += 1
        else:
            events.append(event)
    return Delivery(tuple(events), tuple(rejections), ignored)


def parse_event(element: Any, received_at: datetime) -> TaskEvent | None:
    """One envelope -> a TaskEvent, None for an element that carries no job task's state, or
    MalformedEventError."""
    if not isinstance(element, dict):
        raise MalformedEventError("an event must be a JSON object")
    if "specversion" in element:
        if element["specversion"] != "1.0":
            raise MalformedEventError(f"unsupported CloudEvents specversion {element['specversion']!r}")
        event_type = required_str(element, "type")
        envelope_time_field = "time"
        if "data_base64" in element:
            raise MalformedEventError("binary CloudEvents data (data_base64) is not supported")
        required_str(element, "source")
    else:
        event_type = required_str(element, "eventType")
        envelope_time_field = "eventTime"
    event_id = required_str(element, "id")
    if event_type == SUBSCRIPTION_DELETED:
        return None
    data = element.get("data")
    if not isinstance(data, dict):
        raise MalformedEventError("data must be a JSON object")

    if event_type == TASK_STATE_CHANGED:
        if "operationName" in data:  # a service-log record forwarded as the event's data
            return servicelog.parse_record(data, received_at, event_id)
        job_id = batch_id(data.get("jobId"), "jobId")
        task_id, status = task_status(data, received_at)
        return TaskEvent(event_id, event_type, job_id, task_id, status)

    if event_type == TASK_DELETED:
        job_id, task_id = job_and_task_ids(data)
        ticks = ticks_of(element.get(envelope_time_field), envelope_time_field, received_at)
        return TaskEvent(event_id, event_type, job_id, task_id, TaskStatus.observed(ticks, 0, None, None, 1))

    raise MalformedEventError(f"unsupported event type {event_type!r}: expected {TASK_STATE_CHANGED} or {TASK_DELETED}")
