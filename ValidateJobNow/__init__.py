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
    settings = get_settings()
    job_id = req.route_params.get("jobId", "")
    address = api.addressed(settings, Access.OPERATE, req.headers, req.params, req.route_params)
    reply = None if isinstance(address, api.JobAddress) else address
    if isinstance(address, api.JobAddress):
        client = df.DurableOrchestrationClient(starter)
        instance_id = workflow.on_demand_instance_id(address.job_key)
        try:
            await passes.start_job_pass(client, JobRef(job_id, address.job_key))
            status_url = req.url.split("?", 1)[0].rstrip("/").removesuffix("/validate") + "/validation"
            reply = Reply(
                202,
                {"id": instance_id, "jobId": job_id, "statusQueryGetUri": status_url},
                {"Location": status_url, "Retry-After": "2"},
            )
        except Exception:
            logger.exception("could not start a validation", extra={"job_id": job_id})
            reply = error(503, "ServerBusy", "The validation could not be started; retry later.")
    return func.HttpResponse(reply.text, status_code=reply.status, headers=reply.all_headers)
