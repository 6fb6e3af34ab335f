"""A function of the keyed test app at authLevel admin: the master key alone opens it."""

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("AdminOnly")
