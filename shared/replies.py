"""HTTP replies as plain data, so the domain never imports azure.functions.

A function folder turns a Reply into ``func.HttpResponse(reply.text, status_code=reply.status,
headers=reply.headers)``; ``guarded`` is the edge's one place that logs an unexpected error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import StoreUnavailableError, batch_error_body

JSON = "application/json;odata=minimalmetadata"


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "" if self.body is None else json.dumps(self.body, separators=(",", ":"))

    @property
    def all_headers(self) -> dict[str, str]:
        return {"Content-Type": JSON, **self.headers} if self.body is not None else dict(self.headers)


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, body, headers or {})


def etag_of(content: bytes) -> str:
    """A strong ETag naming these bytes."""
    return f'"{hashlib.sha256(content).hexdigest()[:32]}"'


def not_modified(etag: str, if_none_match: str | None) -> bool:
    """Whether a GET's If-None-Match names ``etag`` (weak or strong, or ``*``)."""
    if if_none_match is None:
        return False
    offered = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in offered or "*" in offered


def conditional(body: Any, version: Any, if_none_match: str | None) -> Reply:
    """A 200 with an ETag of ``version`` (what the body is made of), or a bodiless 304 when the
    caller's If-None-Match already names it: dashboards poll, and an unchanged job costs no body."""
    etag = etag_of(json.dumps(version, sort_keys=True, separators=(",", ":"), default=str).encode())
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    return Reply(304, None, headers) if not_modified(etag, if_none_match) else Reply(200, body, headers)


def error(
    status: int, code: str, message: str, values: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> Reply:
    """A reply in Batch's error body (the azure-batch SDK parses it)."""
    return Reply(status, batch_error_body(code, message, values), headers or {})


def store_unavailable(error_: StoreUnavailableError) -> Reply:
    # 503 makes Event Grid redeliver and tells API callers to retry; nothing was half-applied.
    return error(503, "ServerBusy", f"The server is busy; retry later. {error_}", headers={"Retry-After": "10"})


async def guarded(logger: logging.Logger, work: Awaitable[Reply], **log_fields: Any) -> Reply:
    """Await a handler; storage trouble -> 503, anything unexpected -> logged once, 500."""
    try:
        return await work
    except StoreUnavailableError as failure:
        logger.warning("storage unavailable: %s", failure, extra=log_fields)
        return store_unavailable(failure)
    except Exception:
        logger.exception("unhandled error", extra=log_fields)
        return error(500, "InternalError", "The server encountered an internal error; retry later.")
