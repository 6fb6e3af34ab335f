"""Timer: record each job's progress point, thin old points, raise stall and failure alerts."""

import logging
from datetime import UTC, datetime

import azure.functions as func

from shared import monitoring
from shared.config import get_settings
from shared.store import get_store

logger = logging.getLogger(__name__)


async def main(timer: func.TimerRequest) -> None:
    settings = get_settings()
    try:
        await monitoring.record_progress(get_store(settings), settings, datetime.now(UTC))
    except Exception:
        logger.exception("could not record progress")
        raise
