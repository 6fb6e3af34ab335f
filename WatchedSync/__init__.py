"""Timer (every second): what changed in each watched job, from List Tasks; glue over shared.sync."""

import logging
from datetime import UTC, datetime

import azure.functions as func

from shared import sync
from shared.batch import get_batch
from shared.config import get_settings
from shared.store import get_store

logger = logging.getLogger(__name__)


async def main(timer: func.TimerRequest) -> None:
    settings = get_settings()
    default = settings.accounts.default
    if default is None or not default.url or not settings.watch_minutes:
        return
    try:
        await sync.run_watched(get_store(settings), get_batch(settings), settings, datetime.now(UTC))
    except Exception:
        logger.exception("watched sync run failed; the next run starts from the saved positions")
        raise
