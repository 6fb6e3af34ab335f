"""Job summaries: what the jobs list shows of each job, kept so that a page of the list is one query,
whatever the number of jobs.

In ``{prefix}summaries``:
- partitions ``ids|{account}`` (``-``: the default account): a row per job, keyed by its job key,
  with its summary, where its list rows are (``Keys``) and may still be (``Stale``: a move cut
  short), and what it adds to its account's totals; and the account's totals row (``~totals``),
  written in the same transaction as the jobs' rows, so the totals take each change exactly once;
- partition ``state``: the backfill's position.

List rows: one per family the job is in -- ``all``, ``account.{account}``, ``active`` or ``finished``
(tasks left or not), ``alert`` (stalled or failing) -- keyed ``{inverted ticks of its last
change}|{jobKey}`` (newest first), in a bucket per family and hour of the last change,
``{family}|{inverted hour}``: the bucket is the partition, and a table of its own
(``{prefix}d{hash}``), because Azurite reads a table's every row per query (a list table of the
whole fleet would cost 45 ms a query at 50,000 jobs). ``{prefix}summaryhours`` has a row per bucket
that holds rows (partition ``hours``), so a page knows which buckets to read.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.counting import Counts
from shared.errors import InvalidContinuationError
from shared.events import TICKS_PER_SECOND, datetime_to_ticks
from shared.store.codec.history import table_time

MAX_TICKS = 10**19 - 1
HOUR_TICKS = 3600 * TICKS_PER_SECOND
MAX_HOUR = 10**9 - 1
HOURS_PARTITION = "hours"
IDS_PREFIX = "ids|"  # then the account: the partitions of jobs' own rows
TOTALS_ROW = "~totals"  # after every job key: '~' sorts after letters and digits
DEFAULT_ACCOUNT = "-"  # the default account in partition names (its job keys name no account)
ALL, ACTIVE, FINISHED, ALERT = "all", "active", "finished", "alert"
ACCOUNT_FAMILY = "account."
TOTALS_FIELDS = ("jobs", "activeJobs", "finishedJobs", "stalledJobs", "failingJobs")
TASK_FIELDS = ("active", "running", "completed", "succeeded", "failed")


@dataclass(frozen=True)
class Summary:
    """A job as the jobs list shows it: ``body`` is its list item without id and account."""

    job_key: str
    job_id: str
    account: str | None  # as job keys name it: None for the default account
    last_change: datetime
    body: dict[str, Any]
    version: str  # names what the list's ETag covers of the job (not the progress' clock)
    tasks: Counts
    stalled: bool
    failing: bool

    @property
    def active(self) -> bool:
        return self.tasks.active + self.tasks.running > 0

    @property
    def row_key(self) -> str:
        return f"{MAX_TICKS - datetime_to_ticks(self.last_change):019d}|{self.job_key}"

    def families(self) -> list[str]:
        states = [ACTIVE if self.active else FINISHED] + ([ALERT] if self.stalled or self.failing else [])
        return [ALL, account_family(self.account), *states]

    def list_keys(self) -> list[tuple[str, str]]:
        """Where its list rows go: (partition, row key) per family."""
        hour = hour_of(self.last_change)
        return [(list_partition(family, hour), self.row_key) for family in self.families()]

    def contribution(self) -> dict[str, int]:
        """What the job adds to its account's totals."""
        return {
            "jobs": 1,
            "activeJobs": int(self.active),
            "finishedJobs": int(not self.active),
            "stalledJobs": int(self.stalled),
            "failingJobs": int(self.failing),
            **self.tasks.as_dict(),
        }


def account_partition_name(account: str | None) -> str:
    return DEFAULT_ACCOUNT if account is None else account


def account_family(account: str | None) -> str:
    return f"{ACCOUNT_FAMILY}{account_partition_name(account)}"


def hour_of(moment: datetime) -> int:
    return datetime_to_ticks(moment) // HOUR_TICKS


def list_partition(family: str, hour: int) -> str:
    return f"{family}|{MAX_HOUR - hour:09d}"


def hour_of_partition(partition: str) -> int:
    return MAX_HOUR - int(partition.rpartition("|")[2])


def ids_partition(account: str | None) -> str:
    return f"{IDS_PREFIX}{account_partition_name(account)}"


def hours_row(partition: str) -> dict[str, Any]:
    return {"PartitionKey": HOURS_PARTITION, "RowKey": partition}


def list_row(summary: Summary, partition: str, body_text: str) -> dict[str, Any]:
    return {
        "PartitionKey": partition,
        "RowKey": summary.row_key,
        "JobKey": summary.job_key,
        "JobId": summary.job_id,
        "Account": account_partition_name(summary.account),
        "Active": summary.active,
        "Stalled": summary.stalled,
        "Failing": summary.failing,
        "Body": body_text,
        "Version": summary.version,
    }


def job_row(summary: Summary, stale: list[tuple[str, str]], body_text: str) -> dict[str, Any]:
    """The job's row in its account's ``ids`` partition: the list row's fields, where its list rows
    are and may still be, and its share of the totals."""
    return {
        **list_row(summary, ids_partition(summary.account), body_text),
        "RowKey": summary.job_key,
        "Keys": json.dumps(summary.list_keys()),
        "Stale": json.dumps(sorted(set(stale) - set(summary.list_keys()))),
        "Contribution": json.dumps(summary.contribution()),
        "LastChange": summary.last_change,
    }


@dataclass(frozen=True)
class Brief:
    """A job's tasks and last change as its summary has them (what scheduling validation needs)."""

    tasks: Counts
    last_change: datetime


def brief_of(row: Mapping[str, Any]) -> Brief:
    share = json.loads(row["Contribution"])
    last = row["LastChange"]  # the SDK's datetime, or OData's text where a reply is decoded by hand
    moment = table_time(last) if isinstance(last, datetime) else datetime.fromisoformat(last)
    return Brief(Counts(*(share[name] for name in TASK_FIELDS)), moment)


@dataclass(frozen=True)
class StoredJob:
    """What a job's ``ids`` row says: its list rows, those that may be left over, its share of the totals."""

    keys: list[tuple[str, str]]
    stale: list[tuple[str, str]]
    contribution: dict[str, int]
    etag: str | None


def stored_job_of(row: Mapping[str, Any], etag: str | None) -> StoredJob:
    return StoredJob(
        [tuple(key) for key in json.loads(row["Keys"])],
        [tuple(key) for key in json.loads(row["Stale"])],
        json.loads(row["Contribution"]),
        etag,
    )


def totals_row(account: str | None, totals: Mapping[str, int]) -> dict[str, Any]:
    return {"PartitionKey": ids_partition(account), "RowKey": TOTALS_ROW, "Totals": json.dumps(dict(totals))}


def totals_of(row: Mapping[str, Any] | None) -> dict[str, int]:
    zero = dict.fromkeys((*TOTALS_FIELDS, *TASK_FIELDS), 0)
    return zero if row is None else {**zero, **json.loads(row["Totals"])}


def adjusted(totals: Mapping[str, int], old: Mapping[str, int] | None, new: Mapping[str, int] | None) -> dict[str, int]:
    """``totals`` with a job's share moved from ``old`` to ``new`` (None: not counted)."""
    return {name: value + (new or {}).get(name, 0) - (old or {}).get(name, 0) for name, value in totals.items()}


def totals_body(totals: Mapping[str, int]) -> dict[str, Any]:
    """An account's (or the fleet's) totals as the API returns them."""
    return {
        **{name: totals[name] for name in TOTALS_FIELDS},
        "taskCounts": {name: totals[name] for name in TASK_FIELDS},
    }


# ---- continuation tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class ListPosition:
    """Where a page of the list ended: after row ``row_key`` of hour ``hour`` (by last change), or
    after job id ``job_id`` of account ``account`` (by id, for a prefix)."""

    hour: int | None = None
    row_key: str = ""
    job_id: str = ""
    account: str = ""


def encode_position(position: ListPosition) -> str:
    if position.hour is not None:
        fields: list[Any] = ["h", position.hour, position.row_key]
    else:
        fields = ["i", position.job_id, position.account]
    return base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_position(token: str) -> ListPosition:
    """A token a page handed out; InvalidContinuationError for anything else."""
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        kind, first, second = fields
        if kind == "h" and isinstance(first, int) and 0 <= first <= MAX_HOUR and isinstance(second, str):
            return ListPosition(hour=first, row_key=second)
        if kind == "i" and isinstance(first, str) and isinstance(second, str):
            return ListPosition(job_id=first, account=second)
    except (ValueError, TypeError, binascii.Error):
        pass
    raise InvalidContinuationError("not a continuation token this list handed out")
