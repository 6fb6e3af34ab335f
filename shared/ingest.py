"""The Event Grid webhook: handshakes, then a delivery applied exactly once.

200 only after every valid event is durably applied and every invalid one is kept with its
reason; storage trouble -> 503 so Event Grid redelivers (safe: the store is idempotent).
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Mapping

from shared.events import MAX_DELIVERY_BYTES, InvalidDeliveryError, parse_delivery
from shared.replies import Reply, error, ok
from shared.store import CountsStore

logger = logging.getLogger(__name__)

MAX_REJECTIONS_LISTED = 100


async def handle_delivery(store: CountsStore, method: str, headers: Mapping[str, str], body: bytes,
                          received_at: datetime) -> Reply:
    headers = {name.lower(): value for name, value in headers.items()}
    if method.upper() == "OPTIONS":
        return _abuse_protection_handshake(headers)
    if len(body) > MAX_DELIVERY_BYTES:
        return error(413, "RequestBodyTooLarge",
                     f"A delivery may be at most {MAX_DELIVERY_BYTES} bytes; this one is {len(body)}.")
    try:
        delivery = parse_delivery(body, received_at)
    except InvalidDeliveryError as failure:
        return error(400, "InvalidRequestBody", str(failure))
    if delivery.validation_code is not None:
        logger.info("Event Grid subscription validated")
        return ok({"validationResponse": delivery.validation_code})

    if delivery.rejections:
        await store.keep_rejected(delivery.rejections, received_at)
        for rejection in delivery.rejections:
            logger.warning("event rejected: %s", rejection.reason,
                           extra={"event_id": rejection.event_id, "index": rejection.index})
    outcome = await store.apply(delivery.events)
    logger.info("delivery applied", extra={
        "events": len(delivery.events), "applied": outcome.applied, "unchanged": outcome.unchanged,
        "rejected": len(delivery.rejections), "jobs": sorted({event.job_id for event in delivery.events})[:20],
    })
    return ok({
        "received": len(delivery.events) + len(delivery.rejections) + delivery.ignored,
        "applied": outcome.applied,
        "unchanged": outcome.unchanged,
        "ignored": delivery.ignored,
        "rejected": len(delivery.rejections),
        "rejections": [{"index": r.index, "eventId": r.event_id, "reason": r.reason}
                       for r in delivery.rejections[:MAX_REJECTIONS_LISTED]],
    })


def _abuse_protection_handshake(headers: Mapping[str, str]) -> Reply:
    """CloudEvents webhook validation: echo the origin that asks to deliver here."""
    origin = headers.get("webhook-request-origin")
    if not origin:
        return error(400, "MissingRequiredHeader", "An OPTIONS request must carry WebHook-Request-Origin.")
    return Reply(200, None, {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*",
                             "Allow": "POST, OPTIONS"})
