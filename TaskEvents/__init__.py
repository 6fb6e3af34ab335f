"""Event Grid webhook for task-state events (both schemas): binding glue over shared.ingest."""

import logging
from datetime import UTC, datetime

import azure.functions as func

from shared.access import Access
from shared.config import get_settings
from shared.ingest import handle_delivery
from shared.replies import guarded
from shared.store import get_store

logger = logging.getLogger(__name__)


async def main(req: func.HttpRequest) -> func.HttpResponse:
    received_at = datetime.now(UTC)
    reply = await guarded(logger, _handle(req, received_at))
    return func.HttpResponse(reply.text, status_code=reply.status, headers=reply.all_headers)


async def _handle(req: func.HttpRequest, received_at: datetime):
    settings = get_settings()
    refusal = settings.access.refusal(Access.INGEST, req.headers, req.params)
    return await handle_delivery(
        get_store(settings), req.method, dict(req.headers), req.get_body(), received_at, refusal
    )
