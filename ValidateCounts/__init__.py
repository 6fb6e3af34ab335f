"""Timer: the scheduled pass -- start each due job's validation on its own, and the clean-up."""

import logging

import azure.durable_functions as df
import azure.functions as func

from shared.validation import activities, passes

logger = logging.getLogger(__name__)


async def main(timer: func.TimerRequest, starter: str) -> None:
    try:
        await passes.schedule(df.DurableOrchestrationClient(starter), activities.default_deps())
    except Exception:
        logger.exception("could not start the scheduled validation")
        raise
