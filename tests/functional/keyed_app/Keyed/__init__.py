"""A function of the keyed test app: answers 200 to whoever the host lets through."""

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("Keyed")
