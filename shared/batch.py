"""Azure Batch access over the real azure-batch SDK: job size, job state, List Tasks pages.

The one module that talks to Batch. Credentials: a shared key from settings when one is set,
otherwise Microsoft Entra ID (the app's managed identity). Throttling (429) and 5xx are retried
with backoff by the SDK's pipeline (honouring Retry-After).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.clients import PerLoop
from shared.config import Settings
from shared.errors import ConfigError, TaskCountsError

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000  # List Tasks' maximum
LISTED_FIELDS = ["id", "state", "stateTransitionTime", "executionInfo", "requiredSlots"]
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 6, "retry_backoff_factor": 0.5, "retry_backoff_max": 30}


class BatchUnavailableError(TaskCountsError):
    """Batch failed after retries; the validation step fails and is retried by a later pass."""


@dataclass(frozen=True)
class TaskPage:
    tasks: list[dict]  # raw Batch task objects (REST names), the same shape task-state events carry
    next_link: str | None  # the odata.nextLink to resume from; None after the last page


class BatchReader:
    def __init__(self, client: BatchClient):
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> "BatchReader":
        if not settings.batch_account_url:
            raise ConfigError("BATCH_ACCOUNT_URL is not set: validation needs the Batch account's URL")
        if settings.batch_account_key:
            credential: Any = AzureNamedKeyCredential(settings.batch_account_name, settings.batch_account_key)
        else:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
        return cls(BatchClient(settings.batch_account_url, credential, **_CLIENT_OPTIONS))

    async def close(self) -> None:
        await self._client.close()

    async def job_size(self, job_id: str) -> int | None:
        """Tasks in the job by Batch's own (cheap) counts; None when Batch has no such job."""
        try:
            counts = (await self._client.get_job_task_counts(job_id)).task_counts
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise BatchUnavailableError(f"Batch failed reading task counts of {job_id}: {error}") from error
        return counts.active + counts.running + counts.completed

    async def job_state(self, job_id: str) -> str | None:
        """The job's state (active, completed, ...); None when Batch has no such job."""
        try:
            job = await self._client.get_job(job_id, select=["id", "state"])
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise BatchUnavailableError(f"Batch failed reading job {job_id}: {error}") from error
        return job["state"]  # the REST value ("active", "completed", ...); str() of the SDK enum is not

    async def list_page(self, job_id: str, next_link: str | None, page_size: int = PAGE_SIZE) -> TaskPage:
        """One List Tasks page, all states, in Batch's order; resume with the returned next_link."""
        try:
            pages = self._client.list_tasks(job_id, select=LISTED_FIELDS, max_results=page_size) \
                .by_page(continuation_token=next_link)
            async for page in pages:
                tasks = [task.as_dict() async for task in page]
                return TaskPage(tasks, pages.continuation_token)
        except ResourceNotFoundError:
            raise
        except AzureError as error:
            raise BatchUnavailableError(f"Batch failed listing tasks of {job_id}: {error}") from error
        return TaskPage([], None)


_readers: PerLoop[BatchReader] = PerLoop()


def get_batch(settings: Settings) -> BatchReader:
    """The process's Batch reader for the running event loop (connections are reused)."""
    return _readers.get(lambda: BatchReader.from_settings(settings))


async def close_batch() -> None:
    await _readers.close()
