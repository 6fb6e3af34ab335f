"""The web dashboard's files (``web/``), served by the app itself: no CDN, no build step.

The page is plain HTML, CSS and JavaScript with hand-drawn SVG (bars and a line chart): a few
hundred lines the app serves as they are, rather than a charting library bundled at build time,
so the deployed package has no front-end toolchain or third-party script. The page holds no data
and no key: its script asks for a function key once, keeps it in the browser's local storage and
sends it as the ``x-functions-key`` header, so the key never appears in a URL.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from shared.errors import batch_error_body
from shared.replies import JSON

WEB = Path(__file__).resolve().parent.parent / "web"
INDEX = "index.html"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
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


def serve(asset: str, path: str, if_none_match: str | None) -> WebReply:
    """``asset``: the route's ``{*asset}`` ("" for the page); ``path``: the request's URL path."""
    if asset == "" and not path.endswith("/"):
        # The page lives at .../dashboard/ so that its relative links reach its files and the API.
        return WebReply(301, headers={"Location": path.rsplit("/", 1)[-1] + "/"})
    name = asset or INDEX
    files = _files()
    if name not in files:
        body = batch_error_body("ResourceNotFound", f"The dashboard has no file {name[:100]!r}.")
        return WebReply(404, json.dumps(body).encode(), {"Content-Type": JSON})
    content, etag = files[name]
    headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache",
               "Content-Type": CONTENT_TYPES[Path(name).suffix]}
    if if_none_match is not None and etag in {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}:
        return WebReply(304, headers=headers)
    return WebReply(200, content, headers)


@lru_cache(maxsize=1)
def _files() -> dict[str, tuple[bytes, str]]:
    """The dashboard's files by name, with their ETags (read once per process)."""
    found = {}
    for path in sorted(WEB.iterdir()):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            content = path.read_bytes()
            found[path.name] = (content, f'"{hashlib.sha256(content).hexdigest()[:32]}"')
    return found
