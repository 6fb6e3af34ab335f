"""The counts API: Batch's Get Task Counts body plus freshness and validation, and job listing."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Mapping
from urllib.parse import urlencode

from shared.counting import ID_RULE, is_batch_id
from shared.errors import InvalidContinuationError
from shared.replies import Reply, error, ok
from shared.store import CountsStore, JobCounts

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def counts_body(job: JobCounts) -> dict[str, Any]:
    """Batch's GetTaskCounts body (api-version 2025-06-01) with this service's extras."""
    return {
        "taskCounts": job.tasks.as_dict(),
        "taskSlotCounts": job.slots.as_dict(),
        "validationStatus": job.job.validation_status,
        "lastUpdatedAt": _iso(job.last_updated_at),
        "lastValidatedAt": _iso(job.job.last_validated_at),
        "validationNote": job.job.validation_note,
        "lastValidation": job.job.last_validation,
    }


def invalid_job_id(job_id: str) -> Reply | None:
    """A 400 reply when a job id in a URL breaks Batch's rules, else None."""
    if is_batch_id(job_id):
        return None
    return error(400, "InvalidUri", f"The job id must be {ID_RULE}.", {"jobId": job_id[:100]})


async def get_task_counts(store: CountsStore, job_id: str) -> Reply:
    invalid = invalid_job_id(job_id)
    if invalid is not None:
        return invalid
    job = await store.get_job_counts(job_id.lower())
    if job is None:
        return error(404, "JobNotFound", f"The specified job does not exist. Job id: {job_id}")
    return ok(counts_body(job))


async def list_jobs(store: CountsStore, query: Mapping[str, str], url: str) -> Reply:
    """``GET /api/jobs?maxresults=N&$skiptoken=T`` -> ``{"value": [...], "odata.nextLink": ...}``."""
    raw_size = query.get("maxresults", str(DEFAULT_PAGE_SIZE))
    if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
        return _bad_query("maxresults", raw_size, f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    token = query.get("$skiptoken") or None
    try:
        jobs, next_token = await store.list_jobs(int(raw_size), token)
    except InvalidContinuationError as failure:
        return _bad_query("$skiptoken", token or "", str(failure))
    body: dict[str, Any] = {"value": [{"id": job.job.job_id, **counts_body(job)} for job in jobs]}
    if next_token:
        base = url.split("?", 1)[0]
        body["odata.nextLink"] = f"{base}?{urlencode({'maxresults': raw_size, '$skiptoken': next_token}, safe='$')}"
    return ok(body)


def _bad_query(name: str, value: str, reason: str) -> Reply:
    return error(400, "InvalidQueryParameterValue",
                 "Value for one of the query parameters specified in the request URI is invalid.",
                 {"QueryParameterName": name, "QueryParameterValue": value[:100], "Reason": reason})


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
