"""GET /api/accounts/{account}/jobs/{jobId}/taskcounts:
a job of a named account, the same glue as GetTaskCounts (shared.api.address_of reads the
account from its route)."""

from GetTaskCounts import main

__all__ = ["main"]
