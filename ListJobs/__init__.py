"""GET /api/jobs: a page of the jobs list; binding glue over shared.api (JobTotals reuses it)."""

import logging
from collections.abc import Awaitable, Callable

import azure.functions as func

from shared import api
from shared.access import Access
from shared.config import get_settings
from shared.replies import Reply, guarded
from shared.store import get_store

logger = logging.getLogger(__name__)

FleetAnswer = Callable[..., Awaitable[Reply]]  # (store, query, url, reading, accounts) -> the reply


def reading_route(answer: FleetAnswer) -> Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]:
    """The function of a read-access GET over the fleet answered by ``answer``."""

    async def main(req: func.HttpRequest) -> func.HttpResponse:
        reply = await guarded(logger, _handle(req, answer))
        return func.HttpResponse(reply.text, status_code=reply.status, headers=reply.all_headers)

    return main


async def _handle(req: func.HttpRequest, answer: FleetAnswer) -> Reply:
    settings = get_settings()
    if refusal := settings.access.refusal(Access.READ, req.headers, req.params):
        return refusal
    reading = api.Reading.now_for(settings, req.headers.get("If-None-Match"))
    return await answer(get_store(settings), dict(req.params), req.url, reading, settings.accounts)


main = reading_route(api.list_jobs)
