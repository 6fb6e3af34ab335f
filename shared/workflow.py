"""The validation workflow as pure, deterministic generators (no I/O, clock or environment).

Function folders wrap them with ``df.Orchestrator.create``; the names below are the function
folders they call, and a test checks each one exists with the right trigger.
"""
from __future__ import annotations

from typing import Any, Generator

from shared.batch import PAGE_SIZE

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


SPLIT_PARTS = 4  # a dense creation-time slice becomes this many


def initial_slices(created_ticks: int, scan_started_ticks: int, count: int) -> list[dict]:
    """The job's creation times, [its creation, the scan's start), cut into ``count`` equal slices.

    A task's creation time never changes, so the slices partition the tasks however their states
    move during the scan: each task is listed exactly once. Tasks created after the scan started
    are left out (their events are newer than the scan; the sweep keeps them)."""
    low, high = created_ticks, max(scan_started_ticks, created_ticks + 1)
    return split_slice({"low": low, "high": high, "next": None, "pages": 0}, count)


def split_slice(piece: dict, parts: int) -> list[dict]:
    """Cut a slice into up to ``parts`` non-empty, adjacent, half-open ranges (the same tick never
    falls in two: a boundary tick belongs to the slice it starts)."""
    low, high = piece["low"], piece["high"]
    parts = max(1, min(parts, high - low))
    bounds = [low + (high - low) * n // parts for n in range(parts)] + [high]
    return [{"low": bounds[n], "high": bounds[n + 1], "next": None, "pages": 0} for n in range(parts)]


def validate_job(context) -> Generator[Any, Any, dict]:
    """One job: begin; List Tasks fanned out over creation-time slices, at most ``parallelListings``
    pages in flight, a slice whose first page is full split further, each slice paged in order with
    its next link carried here (a restart resumes after finished pages); the partitions' sweeps in
    parallel; finish."""
    job = context.get_input()
    try:
        scan = yield context.call_activity(BEGIN, job)
        if scan["action"] != "validate":
            return scan
        parallel = scan["parallelListings"]
        # slices worth having: no more than the job has pages (a small job costs no empty listings),
        # at most twice the pages in flight (enough work queued; each split costs one page)
        wanted = max(1, min(2 * parallel, -(-scan["expectedTasks"] // PAGE_SIZE)))
        pending = initial_slices(scan["createdTicks"], scan["scanStartedTicks"], min(parallel, wanted))
        pages = listed = splits = 0
        while pending:
            wave, pending = pending[:parallel], pending[parallel:]
            may_split = len(wave) + len(pending) < wanted
            results = yield context.task_all([
                context.call_activity(LIST_PAGE, {**scan, "slice": piece, "maySplit": may_split}) for piece in wave
            ])
            for piece, result in zip(wave, results):
                if result.get("gone"):  # Batch deleted the job mid-scan
                    return (yield context.call_activity(REMOVE_JOB, {**job, "reason": "JobNotFound"}))
                if result.get("split"):
                    splits += 1
                    pending += split_slice(piece, SPLIT_PARTS)
                    continue
                pages, listed = pages + 1, listed + result["listed"]
                if result["next"]:
                    pending.append({**piece, "next": result["next"], "pages": piece["pages"] + 1})
            context.set_custom_status({"jobId": scan["jobId"], "phase": "listing", "pages": pages,
                                       "tasksListed": listed, "expectedTasks": scan["expectedTasks"],
                                       "slicesPending": len(pending), "splits": splits})
        context.set_custom_status({"jobId": scan["jobId"], "phase": "sweeping", "pages": pages,
                                   "tasksListed": listed, "partitions": scan["partitions"]})
        sweeps = yield context.task_all([
            context.call_activity(SWEEP, {**scan, "shard": shard}) for shard in range(scan["partitions"])
        ])
        return (yield context.call_activity(FINISH, {**scan, "sweeps": sweeps, "tasksListed": listed, "pages": pages}))
    except Exception as error:  # a failed activity: report it, so sibling jobs in a wave still finish
        return {"jobId": job["jobId"], "action": "failed", "error": str(error).strip()[:500]}
