"""What the store hands out and takes in: plain frozen records, no storage types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.accounts import account_of_job_key
from shared.counting import Counts, TaskStatus


class Observed(Protocol):
    """An observation of one task: a parsed event, or a task seen by validation (read-only, so
    frozen dataclasses satisfy it)."""

    @property
    def job_id(self) -> str: ...

    @property
    def task_id(self) -> str: ...

    @property
    def status(self) -> TaskStatus: ...

    @property
    def account(self) -> str | None: ...  # None: the default account


@dataclass(frozen=True)
class Observation:
    """A task seen outside an event, e.g. in a listing (satisfies Observed)."""

    job_id: str
    task_id: str
    status: TaskStatus
    account: str | None = None


DISAGREEMENT_SECONDS = 60.0


@dataclass(frozen=True)
class BatchReported:
    """Batch's own Get Task Counts for a job, asked at ``at``, while it has disagreed with ours
    since ``since`` (Batch's counts are a hint: they never replace ours)."""

    task_counts: dict[str, int]
    at: datetime
    since: datetime

    def standing(self, now: datetime) -> bool:
        """Disagreeing longer than Batch's own lag and a hint's interval explain: said in the API, and
        validation looks at the job sooner."""
        return (now - self.since).total_seconds() >= DISAGREEMENT_SECONDS


@dataclass(frozen=True)
class JobRecord:
    job_key: str
    job_id: str  # first-seen case, for display
    partitions: int
    first_seen_at: datetime
    validation_status: str = "unvalidated"
    last_validated_at: datetime | None = None
    validation_note: str | None = None  # why a job is unvalidated, e.g. over the task limit
    last_validation: dict | None = None  # what the last pass checked and corrected
    created_span: tuple[int, int] | None = None  # ticks of the first and last task creation the last pass listed
    resharding_to: int | None = None  # the partitions a reshard in progress moves rows to
    batch_reported: BatchReported | None = None  # set while Batch's own counts disagree with ours
    state_checked_at: datetime | None = None  # when a scheduled pass last asked Batch for the job's state

    @property
    def account(self) -> str | None:
        """The job's Batch account (None: the default one), as its key names it."""
        return account_of_job_key(self.job_key)


@dataclass(frozen=True)
class SyncPosition:
    """Where the delta sync stands for one job (kept on the job's index row)."""

    job_key: str
    job_id: str
    watermark_ticks: int | None = None  # every change before this was listed; None: never synced
    next_link: str | None = None  # a listing cut by the page budget, resumed next run
    listing_started_ticks: int | None = None  # when that listing began: the watermark once it ends
    synced_at: datetime | None = None
    finished: bool = False  # synced after Batch stopped reporting the job as unfinished
    changed_at: datetime | None = None  # the last sync whose listing found tasks that changed


@dataclass(frozen=True)
class JobCounts:
    job: JobRecord
    tasks: Counts
    slots: Counts
    last_updated_at: datetime | None


@dataclass(frozen=True)
class ApplyOutcome:
    applied: int  # task rows changed
    unchanged: int  # duplicates and observations older than what is stored
    created: int = 0  # of the applied: tasks that had no row yet
    deleted: int = 0  # of the applied: tasks now deleted
