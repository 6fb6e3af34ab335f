"""Server-side check of Batch SharedKey signatures (what the azure-batch SDK sends)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs

SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
MAX_CLOCK_SKEW_SECONDS = 15 * 60


def string_to_sign(account: str, method: str, raw_path: str, raw_query: str, headers: Mapping[str, str]) -> str:
    lowered = {name.lower(): value for name, value in headers.items() if value}
    if method in ("GET", "HEAD") and lowered.get("content-length") == "0":
        lowered.pop("content-length")  # a transport may add it after signing
    text = method + "\n" + "\n".join(lowered.get(name, "") for name in SIGNED_HEADERS) + "\n"
    for name, value in sorted((n, v) for n, v in lowered.items() if "ocp-" in n):
        text += f"{name}:{value}\n"
    text += f"/{account}{raw_path}"
    query = parse_qs(raw_query)
    for name in sorted(query):
        if query[name][0]:
            text += f"\n{name}:{query[name][0]}"
    return text


def verify(
    account: str, key_b64: str, method: str, raw_path: str, raw_query: str, headers: Mapping[str, str]
) -> str | None:
    """None when the request is signed by this account's key, else the reason it is not."""
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    if not authorization.startswith("SharedKey "):
        return "the Authorization header is missing or not SharedKey"
    name, _, signature = authorization[len("SharedKey ") :].partition(":")
    if name != account:
        return f"unknown account {name!r}"
    date = next((v for k, v in headers.items() if k.lower() in ("ocp-date", "date")), None)
    try:
        skew = abs((datetime.now(UTC) - parsedate_to_datetime(date)).total_seconds())
    except (TypeError, ValueError):
        return "the request has no valid ocp-date"
    if skew > MAX_CLOCK_SKEW_SECONDS:
        return "the request's ocp-date is too far from the server's clock"
    expected = base64.b64encode(
        hmac.new(
            base64.b64decode(key_b64),
            string_to_sign(account, method, raw_path, raw_query, headers).encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    if not hmac.compare_digest(expected, signature):
        return "the MAC signature does not match"
    return None
