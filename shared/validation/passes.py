"""Starting validation passes and reporting them: the Durable client side (the timer's scheduled
pass, the on-demand endpoint and its status route). One pass per job at a time, under the job's
own instance id."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from shared.replies import Reply, error, ok
from shared.validation import workflow
from shared.validation.activities import Deps
from shared.validation.payloads import JobPass, JobRef
from shared.validation.scheduling import select_jobs

logger = logging.getLogger(__name__)


async def schedule(client: Any, deps: Deps) -> dict:
    """The scheduled pass: start each due job's validation as its own orchestration (the id on-demand
    validation uses, so one job never has two at once, and a long pass over a huge job delays no
    other job), unless it is still running; hand removals to one clean-up orchestration."""
    plan = await select_jobs(deps)
    started = [job.job_id for job in plan.validate if await start_job_pass(client, job)]
    removing = bool(plan.remove) and await start_unless_running(
        client, workflow.REMOVE_JOBS, workflow.REMOVAL_INSTANCE_ID, [job.to_json() for job in plan.remove]
    )
    return {
        "started": started,
        "stillRunning": len(plan.validate) - len(started),
        "removing": [job.job_id for job in plan.remove] if removing else [],
    }


async def start_job_pass(client: Any, job: JobRef) -> bool:
    """Start one job's validation under its own instance id, unless one is still going."""
    return await start_unless_running(
        client, workflow.VALIDATE_JOB, workflow.on_demand_instance_id(job.job_key), JobPass(job).to_json()
    )


GOING = ("Running", "Pending", "ContinuedAsNew")


def _runtime_of(status: Any) -> str | None:
    return getattr(getattr(status, "runtime_status", None), "value", None)


async def start_unless_running(client: Any, orchestrator: str, instance_id: str, payload: Any) -> bool:
    """Start an orchestration under a fixed id unless one is still going (Durable's client API)."""
    status = await client.get_status(instance_id)
    if _runtime_of(status) in GOING:
        logger.info("validation still running; not starting another", extra={"instance_id": instance_id})
        return False
    await client.start_new(orchestrator, instance_id, payload)
    logger.info("validation started", extra={"instance_id": instance_id, "orchestrator": orchestrator})
    return True


async def on_demand_status(client: Any, job_id: str, job_key: str) -> Reply:
    """``GET /api/jobs/{jobId}/validation``: the job's on-demand validation as Durable reports it,
    202 while it runs, 200 once it ended. Not Durable's own status URLs: they carry the extension's
    system key, which opens every instance's management API, in their query string."""
    status = await client.get_status(workflow.on_demand_instance_id(job_key))
    runtime = _runtime_of(status)
    if runtime is None:
        return error(
            404,
            "ValidationNotFound",
            f"No validation of the job {job_id!r} was started on demand "
            "(or its record is gone): POST .../validate starts one.",
        )
    stamp = {"createdTime": status.created_time, "lastUpdatedTime": status.last_updated_time}
    body = {
        "jobId": job_id,
        "runtimeStatus": runtime,
        "customStatus": status.custom_status,
        "output": status.output,
        **{name: value.isoformat() if isinstance(value, datetime) else value for name, value in stamp.items()},
    }
    return Reply(202, body, {"Retry-After": "2"}) if runtime in GOING else ok(body)
