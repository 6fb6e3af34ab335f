"""Azure Batch access over the real azure-batch SDK: job size, job state, List Tasks pages.

The one module that talks to Batch. Credentials: a shared key from settings when one is set,
otherwise Microsoft Entra ID (the app's managed identity). Throttling (429) and 5xx are retried
with backoff by the SDK's pipeline (honouring Retry-After), and every attempt goes through the
account's request budget (``BATCH_REQUESTS_PER_SECOND``), which a refusal pauses as a whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.core.pipeline.policies import AsyncHTTPPolicy
from azure.core.rest import HttpRequest

from shared.accounts import BatchAccount
from shared.clients import PerLoop
from shared.config import Settings
from shared.errors import ConfigError, TaskCountsError
from shared.events import ticks_to_iso

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000  # List Tasks' maximum
LISTED_FIELDS = ["id", "state", "stateTransitionTime", "executionInfo", "requiredSlots", "creationTime"]
# Throttling comes in bursts when validation fans out: every status retry the total allows (the
# SDK's default is 3), waiting as Retry-After asks.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 6,
    "retry_status": 6,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 30,
}


# List Tasks' $filter clauses, built here with the rest of Batch's wire format.
def creation_filter(low_ticks: int, high_ticks: int) -> str:
    """The tasks created in [low, high)."""
    return (
        f"creationTime ge DateTime'{ticks_to_iso(low_ticks)}' and creationTime lt DateTime'{ticks_to_iso(high_ticks)}'"
    )


def changed_since_filter(since_ticks: int) -> str:
    """The tasks whose state changed at or after ``since``."""
    return f"stateTransitionTime ge DateTime'{ticks_to_iso(since_ticks)}'"


class RequestBudget:
    """An account's Batch request budget in this process: requests leave at most ``per_second`` a
    second, in the order they asked (each attempt counts, the SDK's retries too), and a refusal
    (429 or 503, or 500 as Batch times out under load) pauses every caller until its Retry-After,
    not only the call that got it. The sync, validation and the sizing of new jobs share it."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.per_second = per_second
        self._interval = 1.0 / per_second
        self._clock, self._sleep = clock, sleep
        self._last_slot = -math.inf  # when the latest request was let go (or is due to be)
        self._paused_until = -math.inf
        self.refusals = 0

    async def acquire(self) -> None:
        """Wait for this request's turn."""
        while True:
            now = self._clock()
            slot = max(now, self._paused_until, self._last_slot + self._interval)
            self._last_slot = slot
            if slot <= now:
                return
            await self._sleep(slot - now)
            if self._paused_until <= self._clock():
                return  # else a refusal came while waiting: queue again behind the pause

    def refused(self, retry_after: float | None) -> None:
        """Batch refused a request: nobody sends before its Retry-After (1 s when it gave none)."""
        self.refusals += 1
        until = self._clock() + (DEFAULT_REFUSAL_PAUSE if retry_after is None else retry_after)
        self._paused_until = max(self._paused_until, until)
        logger.warning(
            "Batch refused a request: every call to the account waits %.1f s",
            until - self._clock(),
            extra={"retry_after": retry_after},
        )


class BudgetPolicy(AsyncHTTPPolicy):
    """Puts every attempt through the account's RequestBudget (placed after the retry policy)."""

    def __init__(self, budget: RequestBudget):
        super().__init__()
        self._budget = budget

    async def send(self, request):
        await self._budget.acquire()
        response = await self.next.send(request)
        if response.http_response.status_code in REFUSALS:
            self._budget.refused(retry_after_seconds(response.http_response.headers))
        return response


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a refusal asks for: ``retry-after-ms`` / ``x-ms-retry-after-ms``, else ``Retry-After``
    in seconds or as an HTTP date; None when it asks for none."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if headers.get(name, "").strip().isdigit():
            return int(headers[name]) / 1000
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


REFUSALS = (429, 500, 503)  # Batch's answers when it is overloaded
DEFAULT_REFUSAL_PAUSE = 1.0
_budgets: dict[str, RequestBudget] = {}  # account URL -> its budget, shared by every client in the process


def budget_for(url: str, per_second: int) -> RequestBudget:
    """The budget of the account at ``url``: each account has its own."""
    budget = _budgets.get(url)
    if budget is None or budget.per_second != per_second:
        budget = _budgets[url] = RequestBudget(per_second)
    return budget


class BatchUnavailableError(TaskCountsError):
    """Batch failed after retries; the validation step fails and is retried by a later pass."""


@dataclass(frozen=True)
class TaskPage:
    tasks: list[dict]  # raw Batch task objects (REST names), the same shape task-state events carry
    next_link: str | None  # the odata.nextLink to resume from; None after the last page


class BatchReader:
    def __init__(self, client: BatchClient):
        self._client = client
        self._api_version = client._config.api_version  # the REST version this SDK speaks

    @classmethod
    def for_account(cls, account: BatchAccount | None, settings: Settings) -> BatchReader:
        if account is None or not account.url:
            raise ConfigError("BATCH_ACCOUNT_URL is not set: validation needs the Batch account's URL")
        if account.key:
            credential: Any = AzureNamedKeyCredential(account.name, account.key)
        else:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
        return cls(
            BatchClient(
                account.url,
                credential,
                **_CLIENT_OPTIONS,
                per_retry_policies=[BudgetPolicy(budget_for(account.url, settings.batch_requests_per_second))],
                use_env_settings=settings.proxy_from_environment,
            )
        )

    async def close(self) -> None:
        await self._client.close()

    async def job_size(self, job_id: str) -> int | None:
        """Tasks in the job by Batch's own (cheap) counts; None when Batch has no such job."""
        counts = await self.reported_counts(job_id)
        return None if counts is None else counts["active"] + counts["running"] + counts["completed"]

    async def reported_counts(self, job_id: str) -> dict[str, int] | None:
        """Batch's own Get Task Counts (about 5 s behind, and possibly wrong): a hint, never our counts;
        None when Batch has no such job."""
        try:
            counts = (await self._client.get_job_task_counts(job_id)).task_counts
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise BatchUnavailableError(f"Batch failed reading task counts of {job_id}: {error}") from error
        return {
            "active": counts.active,
            "running": counts.running,
            "completed": counts.completed,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
        }

    async def job_state(self, job_id: str) -> str | None:
        """The job's state (active, completed, ...); None when Batch has no such job."""
        try:
            job = await self._client.get_job(job_id, select=["id", "state"])
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise BatchUnavailableError(f"Batch failed reading job {job_id}: {error}") from error
        return job["state"]  # the REST value ("active", "completed", ...); str() of the SDK enum is not

    async def job_creation_time(self, job_id: str) -> str | None:
        """When Batch created the job (ISO 8601; no task of it is older); None when Batch has no such job."""
        try:
            body = await self._get_page(
                f"/jobs/{quote(job_id, safe='')}", {"$select": "id,creationTime"}, None, f"reading job {job_id}"
            )
        except ResourceNotFoundError:
            return None
        return body.get("creationTime")

    async def list_page(
        self, job_id: str, next_link: str | None, page_size: int = PAGE_SIZE, task_filter: str | None = None
    ) -> TaskPage:
        """One List Tasks page in Batch's order (all states, or those ``task_filter`` selects);
        resume with the returned next_link, which carries the filter.

        Sent through the SDK client's own pipeline (credential, retries) with ``send_request``, and
        parsed as plain JSON: building and unbuilding the SDK's task models was about 45% of a
        validation's CPU (profiled on a 50,000-task job).
        """
        params: dict[str, Any] = {"maxresults": page_size, "$select": ",".join(LISTED_FIELDS)}
        if task_filter:
            params["$filter"] = task_filter
        body = await self._get_page(
            f"/jobs/{quote(job_id, safe='')}/tasks", params, next_link, f"listing tasks of {job_id}"
        )
        return TaskPage(body.get("value", []), body.get("odata.nextLink"))

    async def unfinished_jobs(self) -> dict[str, str]:
        """Every job Batch has that is not completed (or being deleted): job id -> state."""
        jobs: dict[str, str] = {}
        next_link = None
        while True:
            body = await self._get_page(
                "/jobs",
                {
                    "$filter": "state ne 'completed' and state ne 'deleting'",
                    "$select": "id,state",
                    "maxresults": PAGE_SIZE,
                },
                next_link,
                "listing jobs",
            )
            jobs.update((job["id"], job.get("state", "")) for job in body.get("value", []))
            next_link = body.get("odata.nextLink")
            if not next_link:
                return jobs

    async def _get_page(self, path: str, params: dict[str, Any], next_link: str | None, doing: str) -> dict:
        """GET one page of a Batch list (or one resource) through the SDK client's pipeline; 404 ->
        ResourceNotFoundError."""
        if next_link is None:
            request = HttpRequest("GET", path, params={"api-version": self._api_version, **params})
        else:  # the link carries every parameter; only the api-version is ours, as the SDK does
            parts = urlsplit(next_link)
            query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "api-version"]
            query.append(("api-version", self._api_version))
            request = HttpRequest("GET", urlunsplit(parts._replace(query=urlencode(query, quote_via=quote))))
        try:
            # stream=True: the pipeline's own decoding would parse the JSON once more (a 1,000-task page: ~5 ms)
            response = await self._client.send_request(request, stream=True)
            await response.read()
            if response.status_code == 404:
                raise ResourceNotFoundError(response=response)
            response.raise_for_status()
            return json.loads(response.content)  # bytes: no text decoding and charset sniffing first
        except ResourceNotFoundError:
            raise
        except AzureError as error:
            raise BatchUnavailableError(f"Batch failed {doing}: {error}") from error


_readers: dict[str, PerLoop[BatchReader]] = {}  # account name -> its readers


def get_batch(settings: Settings, account: str | None = None) -> BatchReader:
    """The process's Batch reader of an account (None: the default one) for the running event loop
    (connections are reused)."""
    chosen = settings.accounts.default if account is None else settings.accounts.named(account)
    readers = _readers.setdefault(chosen.name if chosen else "", PerLoop())
    return readers.get(lambda: BatchReader.for_account(chosen, settings))


async def close_batch() -> None:
    for readers in _readers.values():
        await readers.close()
