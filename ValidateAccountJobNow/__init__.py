"""POST /api/accounts/{account}/jobs/{jobId}/validate:
a job of a named account, the same glue as ValidateJobNow (shared.api.address_of reads the
account from its route)."""

from ValidateJobNow import main

__all__ = ["main"]
