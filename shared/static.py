"""Files the app serves as they are: the web dashboard (``web/``) and the OpenAPI document.

The dashboard is plain HTML, CSS and JavaScript with hand-drawn SVG (bars and a line chart): a few
hundred lines the app serves unchanged, rather than a charting library bundled at build time, so
the deployed package has no front-end toolchain and no third-party script. The page holds no data
and no key: its script asks for the read key once, keeps it in the tab's session storage (local
storage only when asked to remember it) and sends it as the ``x-functions-key`` header, so the key
never appears in a URL; with Microsoft Entra ID it offers to sign in instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

from shared.errors import batch_error_body
from shared.replies import JSON, etag_of, not_modified

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
OPENAPI = ROOT / "openapi.json"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
}
# The page talks to this app only; nothing inline, nothing framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class WebReply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def dashboard(asset: str, path: str, if_none_match: str | None) -> WebReply:
    """``asset``: the route's ``{*asset}`` ("" for the page); ``path``: the request's URL path."""
    if asset == "" and not path.endswith("/"):
        # The page lives at .../dashboard/ so that its relative links reach its files and the API.
        return WebReply(301, headers={"Location": path.rsplit("/", 1)[-1] + "/"})
    name = asset or INDEX
    if name not in _web_files():
        body = batch_error_body("ResourceNotFound", f"The dashboard has no file {name[:100]!r}.")
        return WebReply(404, json.dumps(body).encode(), {"Content-Type": JSON})
    return _file(WEB / name, if_none_match, SECURITY_HEADERS)


def openapi(if_none_match: str | None) -> WebReply:
    return _file(OPENAPI, if_none_match, {"X-Content-Type-Options": "nosniff"})


def _file(path: Path, if_none_match: str | None, extra_headers: dict[str, str]) -> WebReply:
    content, etag = _read(path)
    headers = {**extra_headers, "ETag": etag, "Cache-Control": "no-cache", "Content-Type": CONTENT_TYPES[path.suffix]}
    if not_modified(etag, if_none_match):
        return WebReply(304, headers=headers)
    return WebReply(200, content, headers)


@lru_cache(maxsize=1)
def _web_files() -> frozenset[str]:
    return frozenset(path.name for path in WEB.iterdir() if path.is_file() and path.suffix in CONTENT_TYPES)


@cache
def _read(path: Path) -> tuple[bytes, str]:
    """A file's bytes and ETag, read once per process (they change only with a deployment)."""
    content = path.read_bytes()
    return content, etag_of(content)
