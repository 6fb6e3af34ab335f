"""Fuzzing the webhook (hypothesis, bounded): arbitrary, event-shaped JSON never crashes it.

Each example goes through the TaskEvents function against Azurite; the reply must be 200 (with
every element either applied, unchanged or rejected) or a 4xx, never an error."""

import asyncio
import json

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import TaskEvents
from shared.store import close_store
from tools.stack import INGEST_KEY

pytestmark = pytest.mark.usefixtures("app_settings")

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30)
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ids = st.sampled_from(["job-1", "JOB-1", "t1", "", "a'b", "x" * 65, "t/1", "ü"]) | st.text(max_size=70)
times = st.sampled_from(
    [
        "2025-06-01T00:00:00Z",
        "2025-06-01T00:00:00.1234567+02:00",
        "2999-01-01T00:00:00Z",
        "2025-13-01T00:00:00Z",
        "yesterday",
    ]
) | st.text(max_size=30)
data = st.fixed_dictionaries(
    {},
    optional={
        "jobId": ids | any_json,
        "id": ids | any_json,
        "taskId": ids,
        "state": st.sampled_from(["active", "preparing", "running", "completed", "gone"]) | any_json,
        "stateTransitionTime": times | any_json,
        "requiredSlots": st.integers(-5, 10**6) | any_json,
        "executionInfo": st.fixed_dictionaries(
            {},
            optional={
                "result": st.sampled_from(["success", "failure", "meh"]) | any_json,
                "exitCode": st.integers() | any_json,
                "retryCount": st.integers(-1, 10**7) | any_json,
                "requeueCount": st.integers(-1, 3),
            },
        )
        | any_json,
        "operationName": st.sampled_from(["TaskStartEvent", "TaskCompleteEvent", "TaskFailEvent", "Other"]),
        "properties": any_json,
        "time": times,
    },
)
event_grid = st.fixed_dictionaries(
    {"data": data | any_json},
    optional={
        "id": st.text(max_size=10) | any_json,
        "eventTime": times,
        "eventType": st.sampled_from(
            ["Batch.TaskStateChanged", "Batch.TaskDeleted", "Microsoft.EventGrid.SubscriptionDeletedEvent", "Other"]
        )
        | any_json,
    },
)
cloud_event = st.fixed_dictionaries(
    {"specversion": st.sampled_from(["1.0", "0.3"]) | any_json, "data": data},
    optional={
        "id": st.text(max_size=10),
        "source": st.text(max_size=10) | any_json,
        "time": times,
        "type": st.sampled_from(["Batch.TaskStateChanged", "Batch.TaskDeleted"]) | any_json,
        "data_base64": st.text(),
    },
)
deliveries = st.lists(event_grid | cloud_event | any_json, max_size=8) | cloud_event | any_json


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=deliveries)
def test_the_webhook_survives_anything(document):
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/taskevents",
        body=json.dumps(document).encode(),
        headers={"x-functions-key": INGEST_KEY},
    )

    async def deliver():
        try:
            return await TaskEvents.main(request)
        finally:
            await close_store()  # each example runs on its own event loop, with its own client

    response = asyncio.run(deliver())
    assert response.status_code in (200, 400, 413), response.get_body()[:300]
    if response.status_code == 200:
        body = json.loads(response.get_body())
        if "validationResponse" not in body:
            assert body["applied"] + body["unchanged"] + body["rejected"] + body["ignored"] == body["received"]
