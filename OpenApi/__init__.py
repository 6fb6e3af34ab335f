"""GET /api/openapi.json: the API's OpenAPI 3.1 document; binding glue over shared.static."""

import azure.functions as func

from shared import static


def main(req: func.HttpRequest) -> func.HttpResponse:
    reply = static.openapi(req.headers.get("If-None-Match"))
    return func.HttpResponse(reply.body, status_code=reply.status, headers=reply.headers)
