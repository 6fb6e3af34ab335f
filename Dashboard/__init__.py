"""GET /api/dashboard/{*asset}: the web dashboard's page and files; binding glue over shared.dashboard."""
from urllib.parse import urlsplit

import azure.functions as func

from shared import dashboard


def main(req: func.HttpRequest) -> func.HttpResponse:
    reply = dashboard.serve(req.route_params.get("asset") or "", urlsplit(req.url).path,
                            req.headers.get("If-None-Match"))
    return func.HttpResponse(reply.body, status_code=reply.status, headers=reply.headers)
