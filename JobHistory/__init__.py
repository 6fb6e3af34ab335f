"""GET /api/jobs/{jobId}/history?since=T (and, as AccountJobHistory, .../accounts/{account}/jobs/...):
a job's progress points; binding glue over shared.api."""

import logging

import azure.functions as func

from shared import api
from shared.access import Access
from shared.config import get_settings
from shared.replies import guarded
from shared.store import get_store

logger = logging.getLogger(__name__)


async def main(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("jobId", "")
    reply = await guarded(logger, _handle(req), job_id=job_id[:64])
    return func.HttpResponse(reply.text, status_code=reply.status, headers=reply.all_headers)


async def _handle(req: func.HttpRequest):
    settings = get_settings()
    address = api.addressed(settings, Access.READ, req.headers, req.params, req.route_params)
    if not isinstance(address, api.JobAddress):
        return address
    reading = api.Reading.now_for(settings, req.headers.get("If-None-Match"))
    return await api.job_history(get_store(settings), address, dict(req.params), reading)
