"""Timer: start the scheduled validation pass under its fixed id, unless one is still running."""
import logging

import azure.durable_functions as df
import azure.functions as func

from shared import validation, workflow

logger = logging.getLogger(__name__)


async def main(timer: func.TimerRequest, starter: str) -> None:
    try:
        await validation.start_unless_running(df.DurableOrchestrationClient(starter), workflow.VALIDATE_COUNTS,
                                              workflow.SCHEDULED_INSTANCE_ID, None)
    except Exception:
        logger.exception("could not start the scheduled validation")
        raise
