"""GET /api/dashboard/{*asset}: the web dashboard's page and files; binding glue over shared.static."""

from urllib.parse import urlsplit

import azure.functions as func

from shared import static


def main(req: func.HttpRequest) -> func.HttpResponse:
    reply = static.dashboard(
        req.route_params.get("asset") or "", urlsplit(req.url).path, req.headers.get("If-None-Match")
    )
    return func.HttpResponse(reply.body, status_code=reply.status, headers=reply.headers)
