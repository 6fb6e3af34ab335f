"""GET /api/accounts/{account}/jobs/{jobId}/validation:
a job of a named account, the same glue as ValidationStatus (shared.api.address_of reads the
account from its route)."""

from ValidationStatus import main

__all__ = ["main"]
