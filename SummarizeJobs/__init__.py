"""Timer: bring the summaries of the jobs that changed (the jobs list, the fleet's totals) up to date."""

import logging
from datetime import UTC, datetime

import azure.functions as func

from shared import fleet
from shared.config import get_settings
from shared.progress import ProgressRules
from shared.store import get_store

logger = logging.getLogger(__name__)


async def main(timer: func.TimerRequest) -> None:
    settings = get_settings()
    try:
        await fleet.summarize_jobs(get_store(settings), ProgressRules.from_settings(settings), datetime.now(UTC))
    except Exception:
        logger.exception("could not summarize jobs")
        raise
