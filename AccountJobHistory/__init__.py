"""GET /api/accounts/{account}/jobs/{jobId}/history:
a job of a named account, the same glue as JobHistory (shared.api.address_of reads the
account from its route)."""

from JobHistory import main

__all__ = ["main"]
