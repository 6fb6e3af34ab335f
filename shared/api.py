"""The counts API: Batch's Get Task Counts body plus freshness, validation and progress; job
listing; a job's progress history. Every GET answers with an ETag and honours If-None-Match."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from shared.access import Access
from shared.accounts import ACCOUNT_NAME, Accounts, job_key_of
from shared.config import Settings
from shared.counting import ID_RULE, is_batch_id
from shared.errors import InvalidContinuationError, StoreUnavailableError
from shared.progress import Point, Progress, ProgressRules, iso, progress_of
from shared.replies import Reply, conditional, error
from shared.store import CountsStore, JobCounts, JobRecord
from shared.store.codec.summaries import decode_position, encode_position, totals_body
from shared.store.summaries import JobFilter

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Reading:
    """What a GET is answered with besides the store: the progress rules, the time, the caller's ETag."""

    rules: ProgressRules
    now: datetime
    if_none_match: str | None = None
    watch_seconds: float = 0.0  # a job read is kept fresh this long (WATCH_MINUTES); 0: the read marks nothing

    @classmethod
    def now_for(cls, settings: Settings, if_none_match: str | None) -> Reading:
        return cls(
            ProgressRules.from_settings(settings),
            datetime.now(UTC),
            if_none_match,
            settings.watch_minutes * 60.0,
        )


@dataclass(frozen=True)
class JobView:
    counts: JobCounts
    progress: Progress
    newest_point: datetime | None
    now: datetime

    def body(self) -> dict[str, Any]:
        return {**counts_body(self.counts), **self._batch_reported(), "progress": self.progress.as_dict()}

    def version(self) -> dict[str, Any]:
        """What the ETag covers: the counts and validation, Batch's own counts where they disagree, the
        newest history point and the flags. Rate and ETA are recomputed whenever one of these
        changes, not as the clock moves."""
        return {
            **counts_body(self.counts),
            **self._batch_reported(),
            "newestPoint": iso(self.newest_point),
            "stalledSince": iso(self.progress.stalled_since),
            "failing": self.progress.failing,
        }

    def _batch_reported(self) -> dict[str, Any]:
        """Batch's own counts beside ours once they have disagreed longer than DISAGREEMENT_SECONDS."""
        report = self.counts.job.batch_reported
        if report is None or not report.standing(self.now):
            return {}
        return {
            "batchReported": {
                "taskCounts": report.task_counts,
                "askedAt": iso(report.at),
                "disagreeingSince": iso(report.since),
            }
        }


def counts_body(job: JobCounts) -> dict[str, Any]:
    """Batch's GetTaskCounts body (api-version 2025-06-01) with this service's extras."""
    return {
        "taskCounts": job.tasks.as_dict(),
        "taskSlotCounts": job.slots.as_dict(),
        "validationStatus": job.job.validation_status,
        "lastUpdatedAt": iso(job.last_updated_at),
        "lastValidatedAt": iso(job.job.last_validated_at),
        "validationNote": job.job.validation_note,
        "lastValidation": job.job.last_validation,
    }


def invalid_job_id(job_id: str) -> Reply | None:
    """A 400 reply when a job id in a URL breaks Batch's rules, else None."""
    if is_batch_id(job_id):
        return None
    return error(400, "InvalidUri", f"The job id must be {ID_RULE}.", {"jobId": job_id[:100]})


@dataclass(frozen=True)
class JobAddress:
    """A job as a URL names it: ``/api/jobs/{jobId}/...`` (the default account) or
    ``/api/accounts/{account}/jobs/{jobId}/...``."""

    job_id: str
    account: str | None  # as job keys name it: None for the default account

    @property
    def job_key(self) -> str:
        return job_key_of(self.account, self.job_id)


def address_of(accounts: Accounts, route: Mapping[str, str]) -> JobAddress | Reply:
    """The job a route's parameters name; 400 for a malformed job id or account name, 404 for an
    account this deployment does not count."""
    job_id = route.get("jobId", "")
    invalid = invalid_job_id(job_id)
    if invalid is not None:
        return invalid
    name = route.get("account")
    if name is None:
        return JobAddress(job_id, None)
    malformed = error(400, "InvalidUri", "The account name must be 3-24 letters and digits.", {"account": name[:100]})
    account = _account_named(accounts, name, malformed)
    return account if isinstance(account, Reply) else JobAddress(job_id, account.key)


@dataclass(frozen=True)
class NamedAccount:
    key: str | None  # as job keys name the account: None for the default one


def _account_named(accounts: Accounts, name: str, malformed: Reply) -> NamedAccount | Reply:
    """The account a URL names; ``malformed`` for a name no account can have, 404 for one not counted."""
    if not ACCOUNT_NAME.fullmatch(name.lower()):
        return malformed
    if name not in accounts:
        return error(404, "AccountNotFound", f"No Batch account {name!r} is counted here.", {"account": name[:100]})
    return NamedAccount(accounts.key_name(accounts.named(name)))


def addressed(
    settings: Settings, access: Access, headers: Mapping[str, str], query: Mapping[str, str], route: Mapping[str, str]
) -> JobAddress | Reply:
    """The job a request addresses once its caller has ``access``; else the refusal, or the 4xx."""
    return settings.access.refusal(access, headers, query) or address_of(settings.accounts, route)


async def get_task_counts(store: CountsStore, address: JobAddress, reading: Reading) -> Reply:
    job_id = address.job_id
    job, points = await store.job_reading(address.job_key, reading.now - reading.rules.window)
    if job is None:
        return _job_not_found(job_id)
    await _watch(store, job.job, reading)
    view = _view(job, points, reading)
    return conditional(view.body(), view.version(), reading.if_none_match)


async def job_history(store: CountsStore, address: JobAddress, query: Mapping[str, str], reading: Reading) -> Reply:
    """``GET /api/jobs/{jobId}/history?since=T`` -> the job's points after T (all held without), oldest first."""
    job_id = address.job_id
    raw_since = query.get("since")
    since = None
    if raw_since is not None:
        since = _parse_time(raw_since)
        if since is None:
            return _bad_query(
                "since", raw_since, "must be an ISO 8601 time with a time zone, e.g. 2026-11-25T12:00:00Z"
            )
    job, points = await asyncio.gather(store.get_job(address.job_key), store.progress_since(address.job_key, since))
    if job is None:
        return _job_not_found(job_id)
    await _watch(store, job, reading)
    body = {"jobId": job.job_id, "value": [_point_body(point) for point in points]}
    return conditional(body, body, reading.if_none_match)


STATES = ("active", "finished")
ALERTS = ("any", "stalled", "failing")


async def list_jobs(
    store: CountsStore, query: Mapping[str, str], url: str, reading: Reading, accounts: Accounts
) -> Reply:
    """``GET /api/jobs?maxresults=N&account=A&state=S&alert=K&prefix=P&$skiptoken=T`` -> ``{"value": [...],
    "odata.nextLink": ...}`` from the job summaries (shared.fleet keeps them, a few seconds behind the
    counts): newest change first, or by id with ``prefix``; a page may hold fewer than N with a next link."""
    chosen = _list_filter(query, accounts)
    if isinstance(chosen, Reply):
        return chosen
    job_filter, size = chosen
    token = query.get("$skiptoken") or None
    await store.ensure_tables()  # a deployment listed before its first summary
    try:
        position = None if token is None else decode_position(token)
        jobs, next_position = await store.summaries.page(job_filter, size, position)
    except InvalidContinuationError as failure:
        return _bad_query("$skiptoken", token or "", str(failure))
    items = [{"id": job.job_id, "account": _account_name(accounts, job.account)} for job in jobs]
    body: dict[str, Any] = {"value": [{**item, **job.body} for item, job in zip(items, jobs, strict=True)]}
    version: dict[str, Any] = {
        "value": [{**item, "version": job.version} for item, job in zip(items, jobs, strict=True)]
    }
    if next_position is not None:
        paging = {
            **{name: query[name] for name in ("maxresults", *LIST_FILTERS) if query.get(name)},
            "$skiptoken": encode_position(next_position),
        }
        base = url.split("?", 1)[0]
        body["odata.nextLink"] = version["odata.nextLink"] = f"{base}?{urlencode(paging, safe='$')}"
    return conditional(body, version, reading.if_none_match)


LIST_FILTERS = ("account", "state", "alert", "prefix")


def _list_filter(query: Mapping[str, str], accounts: Accounts) -> tuple[JobFilter, int] | Reply:
    """The jobs list's page size and filter from its query; a 400 naming the first bad value."""
    raw_size = query.get("maxresults", str(DEFAULT_PAGE_SIZE))
    if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
        return _bad_query("maxresults", raw_size, f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    for name, allowed in (("state", STATES), ("alert", ALERTS)):
        if query.get(name) is not None and query[name] not in allowed:
            return _bad_query(name, query[name], f"must be one of {', '.join(allowed)}")
    prefix = query.get("prefix")
    if prefix is not None and not is_batch_id(prefix):
        return _bad_query("prefix", prefix, f"must be the start of a job id: {ID_RULE}")
    listed = _accounts_asked(query, accounts)
    if isinstance(listed, Reply):
        return listed
    job_filter = JobFilter(
        listed, "account" not in query, query.get("state"), query.get("alert"), prefix.lower() if prefix else None
    )
    return job_filter, int(raw_size)


def _accounts_asked(query: Mapping[str, str], accounts: Accounts) -> tuple[str | None, ...] | Reply:
    """The accounts ``?account=`` names (every configured one without it), as job keys name them; the
    400 or 404 for a name that is malformed or not counted here."""
    wanted = query.get("account")
    if wanted is None:
        return tuple(accounts.key_name(account) for account in accounts.accounts) or (None,)
    malformed = _bad_query("account", wanted, "must be a Batch account's name: 3-24 letters and digits")
    named = _account_named(accounts, wanted, malformed)
    return named if isinstance(named, Reply) else (named.key,)


def _account_name(accounts: Accounts, key: str | None) -> str | None:
    """An account's name in the API: the default account's own name for a job key that names none."""
    if key is not None:
        return key
    return accounts.default.name if accounts.default else None


async def job_totals(
    store: CountsStore, query: Mapping[str, str], url: str, reading: Reading, accounts: Accounts
) -> Reply:
    """``GET /api/totals?account=A`` -> the fleet's totals (tasks by state, jobs by state and alert) and
    each account's, from one read per account of what the summaries keep (``url``: as the jobs list's)."""
    listed = _accounts_asked(query, accounts)
    if isinstance(listed, Reply):
        return listed
    per_account = await store.summaries.totals(listed)
    fleet = dict.fromkeys(next(iter(per_account.values())), 0)
    for totals in per_account.values():
        fleet = {name: fleet[name] + totals[name] for name in fleet}
    body = {
        "fleet": totals_body(fleet),
        "accounts": [
            {"account": _account_name(accounts, key), **totals_body(totals)} for key, totals in per_account.items()
        ],
    }
    return conditional(body, body, reading.if_none_match)


async def _watch(store: CountsStore, job: JobRecord, reading: Reading) -> None:
    """Someone reads this one job: the watched sync keeps it fresh. A mark that cannot be written
    costs freshness, not the answer."""
    if not reading.watch_seconds:
        return
    try:
        await store.watch(job, reading.now, reading.watch_seconds)
    except StoreUnavailableError as failure:
        logger.warning("could not mark a job watched: %s", failure, extra={"job_id": job.job_id})


def _view(job: JobCounts, series: list[Point], reading: Reading) -> JobView:
    return JobView(
        job, progress_of(series, job.tasks, reading.now, reading.rules), series[-1].at if series else None, reading.now
    )


def _point_body(point: Point) -> dict[str, Any]:
    return {"at": iso(point.at), **point.counts.as_dict()}


def _job_not_found(job_id: str) -> Reply:
    return error(404, "JobNotFound", f"The specified job does not exist. Job id: {job_id}")


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _bad_query(name: str, value: str, reason: str) -> Reply:
    return error(
        400,
        "InvalidQueryParameterValue",
        "Value for one of the query parameters specified in the request URI is invalid.",
        {"QueryParameterName": name, "QueryParameterValue": value[:100], "Reason": reason},
    )
