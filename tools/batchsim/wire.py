"""What the simulator writes and reads on the wire, its own way: timestamps as Batch formats them,
OData datetime literals, ids, and Batch's error body. It imports nothing from ``shared/``: the tests
take the simulator for Batch's truth, so a mistake in the app's own helpers must not be repeated
here where no test could see it (tests/tools/test_batchsim_independence.py compares the two)."""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime
from typing import Any

TICKS_PER_SECOND = 10_000_000  # Batch's clock: 100 ns ticks, seven fractional digits
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7})\d*)?(?:(Z)|([+-])(\d{2}):(\d{2}))", re.IGNORECASE
)


def iso(ticks: int) -> str:
    """Ticks since 1970 -> ``2026-12-04T12:00:00.1234567Z``."""
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:07d}Z"


def ticks_of(text: str) -> int:
    """An ISO 8601 time with a zone (an OData datetime literal's text) -> ticks; ValueError otherwise."""
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a time with a zone: {text!r}")
    year, month, day, hour, minute, second, fraction, utc, sign, zone_hours, zone_minutes = match.groups()
    # datetime refuses a 31st of February or an hour 25 that timegm alone would roll over
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    seconds = calendar.timegm(moment.timetuple())
    if not utc:
        offset = (int(zone_hours) * 60 + int(zone_minutes)) * 60
        seconds -= offset if sign == "+" else -offset
    return seconds * TICKS_PER_SECOND + int((fraction or "0").ljust(7, "0"))


def is_id(value: Any) -> bool:
    """A Batch job or task id: 1-64 letters, digits, hyphens and underscores."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def error_body(code: str, message: str, values: dict[str, str] | None = None) -> dict[str, Any]:
    """Batch's error envelope, as the azure-batch SDK parses it."""
    body: dict[str, Any] = {"code": code, "message": {"lang": "en-US", "value": message}}
    if values:
        body["values"] = [{"key": key, "value": value} for key, value in values.items()]
    return body
