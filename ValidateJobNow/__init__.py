"""POST /api/jobs/{jobId}/validate: validate one job now; 202 with the durable status URLs."""
import logging

import azure.durable_functions as df
import azure.functions as func

from shared import api, validation, workflow
from shared.replies import error

logger = logging.getLogger(__name__)


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    job_id = req.route_params.get("jobId", "")
    reply = api.invalid_job_id(job_id)
    if reply is None:
        client = df.DurableOrchestrationClient(starter)
        instance_id = workflow.on_demand_instance_id(job_id.lower())
        try:
            await validation.start_unless_running(client, workflow.VALIDATE_JOB, instance_id,
                                                  {"jobKey": job_id.lower(), "jobId": job_id})
            return client.create_check_status_response(req, instance_id)
        except Exception:
            logger.exception("could not start a validation", extra={"job_id": job_id})
            reply = error(503, "ServerBusy", "The validation could not be started; retry later.")
    return func.HttpResponse(reply.text, status_code=reply.status, headers=reply.all_headers)
