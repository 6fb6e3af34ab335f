"""GET /api/jobs: the job index with counts and progress, paged; binding glue over shared.api."""

import logging

import azure.functions as func

from shared import api
from shared.access import Access
from shared.config import get_settings
from shared.replies import guarded
from shared.store import get_store

logger = logging.getLogger(__name__)


async def main(req: func.HttpRequest) -> func.HttpResponse:
    reply = await guarded(logger, _handle(req))
    return func.HttpResponse(reply.text, status_code=reply.status, headers=reply.all_headers)


async def _handle(req: func.HttpRequest):
    settings = get_settings()
    if refusal := settings.access.refusal(Access.READ, req.headers, req.params):
        return refusal
    reading = api.Reading.now_for(settings, req.headers.get("If-None-Match"))
    return await api.list_jobs(get_store(settings), dict(req.params), req.url, reading, settings.accounts)
