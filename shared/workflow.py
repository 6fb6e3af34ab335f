"""The validation workflow as pure, deterministic generators (no I/O, clock or environment).

Function folders wrap them with ``df.Orchestrator.create``; the names below are the function
folders they call, and a test checks each one exists with the right trigger.
"""
from __future__ import annotations

from typing import Any, Generator

VALIDATE_COUNTS = "ValidateCountsOrchestrator"
SELECT_JOBS = "ValidateCountsSelectJobs"
REMOVE_JOB = "ValidateCountsRemoveJob"
VALIDATE_JOB = "ValidateJobOrchestrator"
BEGIN = "ValidateJobBegin"
LIST_PAGE = "ValidateJobPage"
SWEEP = "ValidateJobSweep"
FINISH = "ValidateJobFinish"

SCHEDULED_INSTANCE_ID = "validate-counts"  # one scheduled pass at a time
PARALLEL_JOBS = 4  # job validations in flight at once


def on_demand_instance_id(job_key: str) -> str:
    return f"validate-job-{job_key}"


def validate_counts(context) -> Generator[Any, Any, dict]:
    """Validate every job that changed since its last validation; clean up jobs that are gone."""
    plan = yield context.call_activity(SELECT_JOBS, None)
    jobs = plan["validate"]
    results: list[dict] = []
    for start in range(0, len(jobs), PARALLEL_JOBS):
        wave = jobs[start:start + PARALLEL_JOBS]
        results += yield context.task_all([
            context.call_sub_orchestrator(VALIDATE_JOB, job, f"{context.instance_id}:{job['jobKey']}") for job in wave
        ])
        context.set_custom_status({"jobs": len(jobs), "jobsDone": len(results)})
    removed = (yield context.task_all([context.call_activity(REMOVE_JOB, job) for job in plan["remove"]])) \
        if plan["remove"] else []
    return {"jobs": results, "removed": removed}


def validate_job(context) -> Generator[Any, Any, dict]:
    """One job: begin, every List Tasks page in turn (the next link carried here, so a restart
    resumes after the last finished page), the partitions' sweeps in parallel, finish."""
    job = context.get_input()
    try:
        scan = yield context.call_activity(BEGIN, job)
        if scan["action"] != "validate":
            return scan
        next_link, pages, listed = None, 0, 0
        while True:
            page = yield context.call_activity(LIST_PAGE, {**scan, "next": next_link, "page": pages})
            pages, listed, next_link = pages + 1, listed + page["listed"], page["next"]
            context.set_custom_status({"jobId": scan["jobId"], "phase": "listing", "pages": pages,
                                       "tasksListed": listed, "expectedTasks": scan["expectedTasks"]})
            if not next_link:
                break
        context.set_custom_status({"jobId": scan["jobId"], "phase": "sweeping", "pages": pages,
                                   "tasksListed": listed, "partitions": scan["partitions"]})
        sweeps = yield context.task_all([
            context.call_activity(SWEEP, {**scan, "shard": shard}) for shard in range(scan["partitions"])
        ])
        return (yield context.call_activity(FINISH, {**scan, "sweeps": sweeps, "tasksListed": listed, "pages": pages}))
    except Exception as error:  # a failed activity: report it, so sibling jobs in a wave still finish
        return {"jobId": job["jobId"], "action": "failed", "error": str(error).strip()[:500]}
