"""Typed errors and the one Batch-style error body."""

from __future__ import annotations

from typing import Any


class TaskCountsError(Exception):
    """Base of the errors this service raises on purpose."""


class ConfigError(TaskCountsError):
    """A setting is missing or malformed."""


class MalformedEventError(TaskCountsError):
    """An event cannot be applied; the reason is stored with the rejected event."""


class StoreUnavailableError(TaskCountsError):
    """Table Storage failed or stayed contended; the caller should retry later (HTTP 503)."""


class InvalidContinuationError(TaskCountsError):
    """A list continuation token that this service did not issue (HTTP 400)."""


def batch_error_body(code: str, message: str, values: dict[str, str] | None = None) -> dict[str, Any]:
    """The error envelope Azure Batch returns, which the azure-batch SDK parses."""
    body: dict[str, Any] = {"code": code, "message": {"lang": "en-US", "value": message}}
    if values:
        body["values"] = [{"key": key, "value": value} for key, value in values.items()]
    return body
