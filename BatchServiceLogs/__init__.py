"""Event Hubs trigger for Batch's service log: binding glue over shared.ingest.

Bad records are kept with their reason and never raised. Storage trouble raises, on purpose:
the retry policy in function.json then runs the same messages again, and the partition's
checkpoint only moves once they are applied (without it, a throw would skip the batch).
"""

import logging
from datetime import UTC, datetime
from typing import List  # noqa: UP035 -- see main's annotation

import azure.functions as func

from shared.config import get_settings
from shared.ingest import apply_service_log
from shared.monitoring import report_service_log_lag
from shared.store import get_store

logger = logging.getLogger(__name__)


# typing.List, not list[...]: azure-functions' EventHubConverter accepts only a typing generic for
# cardinality many (its check_input_type_annotation refuses list[EventHubEvent]).
async def main(events: List[func.EventHubEvent]) -> None:  # noqa: UP006
    received_at = datetime.now(UTC)
    report_service_log_lag([event.enqueued_time for event in events], received_at)  # before a retry can fail
    try:
        settings = get_settings()
        await apply_service_log(
            get_store(settings), [event.get_body() for event in events], received_at, settings.accounts
        )
    except Exception:
        logger.exception(
            "service-log messages not applied; the retry policy runs them again", extra={"messages": len(events)}
        )
        raise
