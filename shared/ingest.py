"""Ingestion: a parsed delivery applied exactly once, from either event source.

* The Event Grid webhook (``handle_delivery``): handshakes, then 200 only after every valid
  event is durably applied and every invalid one kept with its reason; storage trouble -> 503 so
  Event Grid redelivers (safe: the store is idempotent).
* Batch's service log through Event Hubs (``apply_service_log``): bad records are kept, never
  raised; records of an account this deployment does not count are ignored and reported (the
  ``otherAccount`` alert); only storage trouble raises (StoreUnavailableError), so the trigger's
  retry policy runs the same messages again before the checkpoint moves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from shared import servicelog
from shared.accounts import Accounts
from shared.eventgrid import MAX_DELIVERY_BYTES, InvalidDeliveryError, parse_delivery
from shared.events import Delivery
from shared.monitoring import report_other_accounts
from shared.replies import Reply, error, ok
from shared.store import ApplyOutcome, CountsStore

logger = logging.getLogger(__name__)

MAX_REJECTIONS_LISTED = 100


@dataclass(frozen=True)
class IngestOutcome:
    received: int  # elements: events, rejections, ignored ones and other accounts' records
    applied: int
    unchanged: int
    ignored: int
    rejected: int
    other_accounts: int = 0  # service-log records of accounts this deployment does not count


async def handle_delivery(
    store: CountsStore,
    method: str,
    headers: Mapping[str, str],
    body: bytes,
    received_at: datetime,
    refusal: Reply | None = None,
) -> Reply:
    """``refusal``: the edge found the caller without ingest access. Then only Event Grid's handshakes
    are answered (they read and write nothing, and may come without the delivery's key header); every
    other request gets the refusal, with nothing kept."""
    headers = {name.lower(): value for name, value in headers.items()}
    if method.upper() == "OPTIONS":
        return _abuse_protection_handshake(headers)
    if len(body) > MAX_DELIVERY_BYTES:
        return refusal or error(
            413,
            "RequestBodyTooLarge",
            f"A delivery may be at most {MAX_DELIVERY_BYTES} bytes; this one is {len(body)}.",
        )
    try:
        delivery = parse_delivery(body, received_at)
    except InvalidDeliveryError as failure:
        return refusal or error(400, "InvalidRequestBody", str(failure))
    if delivery.handshake_code is not None:
        logger.info("Event Grid subscription validated")
        return ok({"validationResponse": delivery.handshake_code})
    if refusal is not None:
        return refusal

    outcome = await apply_delivery(store, delivery, received_at, "Event Grid delivery")
    return ok(
        {
            "received": outcome.received,
            "applied": outcome.applied,
            "unchanged": outcome.unchanged,
            "ignored": outcome.ignored,
            "rejected": outcome.rejected,
            "rejections": [
                {"index": r.index, "eventId": r.event_id, "reason": r.reason}
                for r in delivery.rejections[:MAX_REJECTIONS_LISTED]
            ],
        }
    )


async def apply_service_log(
    store: CountsStore, bodies: Iterable[str | bytes], received_at: datetime, accounts: Accounts
) -> IngestOutcome:
    """One Event Hubs invocation's messages, counted for ``accounts``; raises StoreUnavailableError
    only (retry them all)."""
    delivery = servicelog.parse_messages(bodies, received_at, accounts)
    report_other_accounts(delivery.other_accounts)  # before a retry can fail: seen even while storage is down
    return await apply_delivery(store, delivery, received_at, "service-log messages")


async def apply_delivery(store: CountsStore, delivery: Delivery, received_at: datetime, source: str) -> IngestOutcome:
    """Keep the rejections, then apply the events: the one path every event source takes."""
    if delivery.rejections:
        await store.keep_rejected(delivery.rejections, received_at)
        for rejection in delivery.rejections:
            logger.warning(
                "event rejected: %s",
                rejection.reason,
                extra={"event_id": rejection.event_id, "index": rejection.index, "source": source},
            )
    applied: ApplyOutcome = await store.apply(delivery.events)
    other_accounts = sum(delivery.other_accounts.values())
    outcome = IngestOutcome(
        received=len(delivery.events) + len(delivery.rejections) + delivery.ignored + other_accounts,
        applied=applied.applied,
        unchanged=applied.unchanged,
        ignored=delivery.ignored,
        rejected=len(delivery.rejections),
        other_accounts=other_accounts,
    )
    logger.info(
        "%s applied",
        source,
        extra={
            "events": len(delivery.events),
            "applied": outcome.applied,
            "unchanged": outcome.unchanged,
            "ignored": outcome.ignored,
            "rejected": outcome.rejected,
            "jobs": sorted({event.job_id for event in delivery.events})[:20],
        },
    )
    return outcome


def _abuse_protection_handshake(headers: Mapping[str, str]) -> Reply:
    """CloudEvents webhook validation: echo the origin that asks to deliver here."""
    origin = headers.get("webhook-request-origin")
    if not origin:
        return error(400, "MissingRequiredHeader", "An OPTIONS request must carry WebHook-Request-Origin.")
    return Reply(200, None, {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"})
