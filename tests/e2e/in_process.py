"""Runs function folders in this process, each call in its own ``asyncio.run``, as a script or a
notebook would, then exits: what it prints is each call's outcome; stderr must stay quiet.

    python -W error::ResourceWarning -m tests.e2e.in_process JOB_ID   (settings from the environment)
"""

import asyncio
import gc
import json
import sys

import azure.functions as func
from azure.functions.timer import TimerRequest

import GetTaskCounts
import RecordProgress
import SyncTasks
import TaskEvents
from tools.stack import INGEST_KEY, READ_KEY


def event(job_id: str) -> bytes:
    return json.dumps(
        [
            {
                "id": f"{job_id}-1",
                "subject": f"jobs/{job_id}/tasks/t1",
                "eventType": "Batch.TaskStateChanged",
                "eventTime": "2026-12-01T12:00:00Z",
                "dataVersion": "1.0",
                "data": {
                    "jobId": job_id,
                    "id": "t1",
                    "state": "running",
                    "stateTransitionTime": "2026-12-01T12:00:00Z",
                    "requiredSlots": 1,
                },
            }
        ]
    ).encode()


def main(job_id: str) -> None:
    outcomes = {}
    delivery = func.HttpRequest(
        "POST",
        "http://localhost/api/taskevents",
        headers={"x-functions-key": INGEST_KEY},
        params={},
        route_params={},
        body=event(job_id),
    )
    outcomes["TaskEvents"] = asyncio.run(TaskEvents.main(delivery)).status_code
    asyncio.run(SyncTasks.main(TimerRequest()))  # Batch and storage clients
    asyncio.run(RecordProgress.main(TimerRequest()))
    read = func.HttpRequest(
        "GET",
        f"http://localhost/api/jobs/{job_id}/taskcounts",
        headers={"x-functions-key": READ_KEY},
        params={},
        route_params={"jobId": job_id},
        body=b"",
    )
    answer = asyncio.run(GetTaskCounts.main(read))
    outcomes["GetTaskCounts"] = answer.status_code
    outcomes["taskCounts"] = json.loads(answer.get_body())["taskCounts"]
    gc.collect()  # every client left behind by the loops above would be found and reported now
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main(sys.argv[1])
