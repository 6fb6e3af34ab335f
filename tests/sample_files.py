"""The one loader for sample events (tests/samples/): whole deliveries and service-log records,
with fields overridden where a test needs another value."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

from shared.accounts import Accounts, BatchAccount

SAMPLES = Path(__file__).parent / "samples"
# The account the service-log samples come from (the simulator's, as the app settings of the tests name it)
SAMPLE_ACCOUNTS = Accounts((BatchAccount("simaccount"),))
SERVICE_LOG_KINDS = (
    "task_start",
    "task_complete_success",
    "task_complete_failure",
    "task_complete_before_run",
    "task_fail",
    "task_requeue",
    "task_schedule_fail",
    "special_task_start",
    "pool_resize_complete",
)


def load(name: str) -> Any:
    """A sample file's JSON, e.g. ``load("eventgrid_batch.json")``."""
    return json.loads((SAMPLES / name).read_text())


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def service_log_record(kind: str, time: str | None = None, **properties: Any) -> dict:
    """One documented service-log record (``kind`` from SERVICE_LOG_KINDS); keyword arguments
    replace top-level ``properties`` fields (``executionInfo`` is merged into the sample's)."""
    record = copy.deepcopy(load(f"servicelog/{kind}.json"))
    if time is not None:
        record["time"] = time
    execution = properties.pop("executionInfo", None)
    record["properties"].update(properties)
    if execution is not None:
        record["properties"]["executionInfo"] = {**record["properties"].get("executionInfo", {}), **execution}
    return record


def hub_message(*records: dict) -> str:
    """An Event Hubs message body as a diagnostic setting writes it."""
    return json.dumps({"records": list(records)})


def event_grid(data: dict, event_type: str = "Batch.TaskStateChanged", event_id: str = "e1", **envelope: Any) -> dict:
    """An Event Grid schema event around ``data``."""
    return {
        "id": event_id,
        "eventType": event_type,
        "eventTime": "2025-06-01T12:00:00Z",
        "subject": "s",
        "dataVersion": "1",
        "data": data,
        **envelope,
    }


def cloud_event(data: Any = None, **envelope: Any) -> dict:
    """A CloudEvents 1.0 event around ``data`` (none when None); ``envelope`` replaces or adds attributes."""
    event = {"specversion": "1.0", "id": "c1", "source": "s", "type": "Batch.TaskStateChanged", **envelope}
    return event if data is None else {**event, "data": data}


def task_data(**fields: Any) -> dict:
    """A Batch task object as an event's data (job-1/task-1, running); keyword arguments replace or add fields."""
    return {
        "jobId": "job-1",
        "id": "task-1",
        "state": "running",
        "stateTransitionTime": "2025-06-01T12:00:00.0000001Z",
        **fields,
    }


def validation_handshake(code: Any) -> dict:
    """Event Grid's subscription validation event (``code`` any JSON value, to test bad ones)."""
    return event_grid(
        {"validationCode": code}, event_type="Microsoft.EventGrid.SubscriptionValidationEvent", event_id="v"
    )


def principal(*roles: str, role_type: str = "roles") -> str:
    """An X-MS-CLIENT-PRINCIPAL as App Service Authentication builds it from a token's claims."""
    claims = [{"typ": "aud", "val": "api://taskcounts"}, *({"typ": role_type, "val": role} for role in roles)]
    document = {
        "auth_typ": "aad",
        "claims": claims,
        "name_typ": "name",
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    }
    return base64.b64encode(json.dumps(document).encode()).decode()
