"""POST /api/jobs/{jobId}/validate: validate one job now; 202 pointing at GET .../validation."""

import logging

import azure.durable_functions as df
import azure.functions as func

from shared import api
from shared.access import Access
from shared.config import get_settings
from shared.replies import Reply, error
from shared.validation import passes, workflow
from shared.validation.payloads import JobRef

logger = logging.getLogger(__name__)


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    reply = await _handle(req, starter)
    return func.HttpResponse(reply.text, status_code=reply.status, headers=reply.all_headers)


async def _handle(req: func.HttpRequest, starter: str) -> Reply:
    address = api.addressed(get_settings(), Access.OPERATE, req.headers, req.params, req.route_params)
    if not isinstance(address, api.JobAddress):
        return address
    try:
        await passes.start_job_pass(df.DurableOrchestrationClient(starter), JobRef(address.job_id, address.job_key))
    except Exception:
        logger.exception("could not start a validation", extra={"job_id": address.job_id})
        return error(503, "ServerBusy", "The validation could not be started; retry later.")
    status_url = req.url.split("?", 1)[0].rstrip("/").removesuffix("/validate") + "/validation"
    return Reply(
        202,
        {
            "id": workflow.on_demand_instance_id(address.job_key),
            "jobId": address.job_id,
            "statusQueryGetUri": status_url,
        },
        {"Location": status_url, "Retry-After": "2"},
    )
