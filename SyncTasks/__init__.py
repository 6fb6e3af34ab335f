"""Timer: the delta sync from List Tasks (tasks added, changes no log reported); glue over shared.sync."""

import logging
from datetime import UTC, datetime
from functools import partial

import azure.functions as func

from shared import sync
from shared.batch import get_batch
from shared.config import get_settings
from shared.store import get_store

logger = logging.getLogger(__name__)


async def main(timer: func.TimerRequest) -> None:
    settings = get_settings()
    try:
        await sync.run_every_account(get_store(settings), partial(get_batch, settings), settings, datetime.now(UTC))
    except Exception:
        logger.exception("delta sync run failed; the next run starts from the saved positions")
        raise
