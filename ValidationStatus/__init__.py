"""GET /api/jobs/{jobId}/validation: the job's on-demand validation, 202 while it runs.

Binding glue over shared.validation.passes."""

import logging

import azure.durable_functions as df
import azure.functions as func

from shared import api
from shared.access import Access
from shared.config import get_settings
from shared.replies import guarded
from shared.validation import passes

logger = logging.getLogger(__name__)


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    job_id = req.route_params.get("jobId", "")
    reply = await guarded(logger, _handle(req, starter), job_id=job_id[:64])
    return func.HttpResponse(reply.text, status_code=reply.status, headers=reply.all_headers)


async def _handle(req: func.HttpRequest, starter: str):
    settings = get_settings()
    address = api.addressed(settings, Access.READ, req.headers, req.params, req.route_params)
    if not isinstance(address, api.JobAddress):
        return address
    return await passes.on_demand_status(df.DurableOrchestrationClient(starter), address.job_id, address.job_key)
