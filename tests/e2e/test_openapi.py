"""A bounded schemathesis run against the local stack: every operation in openapi.json, no 5xx,
and every response -- status, content type, headers, body -- as the document says."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tools.stack import INGEST_KEY, READ_KEY, Stack

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent.parent
INGESTING = {"x-functions-key": INGEST_KEY}
# Not checked: positive_data_acceptance (a $skiptoken this service did not issue is a 400 though any
# string fits the schema) and negative_data_rejection (the webhook answers 200 to any array and keeps
# each malformed event with its reason, so Event Grid does not redeliver what can never apply).
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance"
)


@pytest.fixture(scope="module")
def stack():
    with Stack(validation_schedule="0 0 0 1 1 *", service_log=False, task_sync_schedule=None) as running:
        # The document's example job exists, so the examples phase reads a real job's full body.
        running.control("jobs", {"id": "Demo-Render", "tasks": 50})
        running.control("publish", {"url": f"{running.app_url}/api/taskevents", "headers": INGESTING})
        yield running


def test_the_app_serves_the_document_in_the_repo(stack):
    served = requests.get(f"{stack.app_url}/api/openapi.json", timeout=10)  # anonymous: no key
    assert served.status_code == 200 and served.json() == json.loads((REPO / "openapi.json").read_text())
    again = requests.get(
        f"{stack.app_url}/api/openapi.json", headers={"If-None-Match": served.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304


def test_schemathesis_finds_no_5xx_and_no_response_outside_the_document(stack):
    # The repo's file (the app serves the same bytes, tested above): loaded from the app's URL,
    # schemathesis 4.32 ran 8 of the 9 operations (why was not looked into).
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        str(REPO / "openapi.json"),
        "--url",
        f"{stack.app_url}/api",
        "-H",
        f"x-functions-key: {READ_KEY}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        os.environ.get("SCHEMATHESIS_EXAMPLES", "30"),
        "--seed",
        os.environ.get("SCHEMATHESIS_SEED", "1"),
        "--generation-database",
        "none",
        "--no-color",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    document = json.loads((REPO / "openapi.json").read_text())
    operations = sum(method != "parameters" for item in document["paths"].values() for method in item)
    assert f"{operations} selected / {operations} total" in run.stdout  # every operation was exercised
