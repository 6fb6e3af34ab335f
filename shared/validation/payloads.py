"""What validation's Durable steps hand each other, as typed records.

Durable Functions carries every input and result as JSON. Each record is read from and written to
that JSON here and nowhere else (``from_json`` / ``to_json``), so the orchestrator and the
activities work with fields, and the JSON keeps the shape it had: an orchestration in flight
during an upgrade replays against the same payloads. Pure: nothing here imports an Azure SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# First and last creation tick a listing saw (None: no task). A list in JSON, a tuple here.
Span = tuple[int, int] | None

SLICES_PER_LISTING = 4  # see workflow.slice_limit
PAGES_PER_CALL = 4  # see workflow: why several pages a call
CALLS_PER_ROUND = 32  # see workflow: why listings go in rounds


class Action(StrEnum):
    """What a validation step says comes next (begin) or came of a job (the pass's output). Members
    are strings, so the JSON stays as it was."""

    RESHARD = "reshard"  # begin: move the job's rows to more partitions first
    VALIDATE = "validate"  # begin: list and sweep
    VALIDATED = "validated"
    SKIPPED = "skipped"  # over VALIDATION_MAX_TASKS
    REMOVED = "removed"  # gone from Batch, or past retention
    FAILED = "failed"


def span_of(value: Any) -> Span:
    return None if value is None else (int(value[0]), int(value[1]))


def span_json(span: Span) -> list[int] | None:
    return None if span is None else [span[0], span[1]]


@dataclass(frozen=True)
class ListingLimits:
    """How a job's listing fans out. It travels in the orchestration's input (``"limits"``, absent:
    these defaults), so a test or a benchmark passes others instead of patching the module."""

    pages_per_call: int = PAGES_PER_CALL
    calls_per_round: int = CALLS_PER_ROUND
    slices_per_listing: int = SLICES_PER_LISTING

    def to_json(self) -> dict:
        return {
            "pagesPerCall": self.pages_per_call,
            "callsPerRound": self.calls_per_round,
            "slicesPerListing": self.slices_per_listing,
        }

    @classmethod
    def from_json(cls, value: dict | None) -> ListingLimits:
        value = value or {}
        return cls(
            value.get("pagesPerCall", PAGES_PER_CALL),
            value.get("callsPerRound", CALLS_PER_ROUND),
            value.get("slicesPerListing", SLICES_PER_LISTING),
        )


@dataclass(frozen=True)
class JobRef:
    """A job a pass works on; ``reason`` says why it is removed, where it is."""

    job_id: str
    job_key: str
    reason: str | None = None

    def to_json(self) -> dict:
        value = {"jobKey": self.job_key, "jobId": self.job_id}
        return value if self.reason is None else {**value, "reason": self.reason}

    @classmethod
    def from_json(cls, value: dict) -> JobRef:
        return cls(value["jobId"], value["jobKey"], value.get("reason"))

    def removed_because(self, reason: str) -> JobRef:
        return JobRef(self.job_id, self.job_key, reason)


@dataclass(frozen=True)
class JobPass:
    """The input of one job's validation orchestration."""

    job: JobRef
    limits: ListingLimits = field(default_factory=ListingLimits)

    def to_json(self) -> dict:
        return {**self.job.to_json(), "limits": self.limits.to_json()}

    @classmethod
    def from_json(cls, value: dict) -> JobPass:
        return cls(JobRef.from_json(value), ListingLimits.from_json(value.get("limits")))


@dataclass(frozen=True)
class Begin:
    """Begin's input: the job, and the partition count a reshard just moved it to (if one did)."""

    job: JobRef
    resharded_to: int | None = None

    def to_json(self) -> dict:
        value = self.job.to_json()
        return value if self.resharded_to is None else {**value, "reshardedTo": self.resharded_to}

    @classmethod
    def from_json(cls, value: dict) -> Begin:
        return cls(JobRef.from_json(value), value.get("reshardedTo"))


@dataclass(frozen=True)
class ReshardPlan:
    """Begin's answer for a job that outgrew its partitions: move its rows to ``target`` first."""

    job: JobRef
    partitions: int
    target: int

    def to_json(self) -> dict:
        return {
            **self.job.to_json(),
            "action": Action.RESHARD,
            "partitions": self.partitions,
            "target": self.target,
        }

    @classmethod
    def from_json(cls, value: dict) -> ReshardPlan:
        return cls(JobRef.from_json(value), value["partitions"], value["target"])


@dataclass(frozen=True)
class Move:
    """One partition's part of a reshard (an activity's input)."""

    plan: ReshardPlan
    shard: int

    def to_json(self) -> dict:
        return {**self.plan.to_json(), "shard": self.shard}

    @classmethod
    def from_json(cls, value: dict) -> Move:
        return cls(ReshardPlan.from_json(value), value["shard"])


@dataclass(frozen=True)
class Scan:
    """Begin's answer for a job to list and sweep: the scan it opened."""

    job: JobRef
    scan_id: str
    scan_started_ticks: int
    created_ticks: int
    partitions: int
    expected_tasks: int
    page_size: int  # Batch's: here so that the orchestrator imports nothing of Batch's SDK
    parallel_listings: int
    known_span: Span = None  # where the last pass saw the job's tasks created

    @property
    def pages_needed(self) -> int:
        return max(1, -(-self.expected_tasks // self.page_size))

    def to_json(self) -> dict:
        return {
            **self.job.to_json(),
            "action": Action.VALIDATE,
            "scanId": self.scan_id,
            "scanStartedTicks": self.scan_started_ticks,
            "createdTicks": self.created_ticks,
            "partitions": self.partitions,
            "expectedTasks": self.expected_tasks,
            "pageSize": self.page_size,
            "knownSpan": span_json(self.known_span),
            "parallelListings": self.parallel_listings,
        }

    @classmethod
    def from_json(cls, value: dict) -> Scan:
        return cls(
            JobRef.from_json(value),
            value["scanId"],
            value["scanStartedTicks"],
            value["createdTicks"],
            value["partitions"],
            value["expectedTasks"],
            value["pageSize"],
            value["parallelListings"],
            span_of(value.get("knownSpan")),
        )


def begun(value: dict) -> Scan | ReshardPlan | dict:
    """Begin's answer: a scan, a reshard plan, or (skipped, removed) the job's outcome as it is."""
    if value["action"] == Action.VALIDATE:
        return Scan.from_json(value)
    if value["action"] == Action.RESHARD:
        return ReshardPlan.from_json(value)
    return value


@dataclass(frozen=True)
class Slice:
    """Tasks created in [low, high); ``next``: where its listing goes on, after ``pages`` pages."""

    low: int
    high: int
    next: str | None = None
    pages: int = 0

    def to_json(self) -> dict:
        return {"low": self.low, "high": self.high, "next": self.next, "pages": self.pages}

    @classmethod
    def from_json(cls, value: dict) -> Slice:
        return cls(value["low"], value["high"], value["next"], value["pages"])


@dataclass(frozen=True)
class PagesRequest:
    """List up to ``max_pages`` pages of one slice; ``may_split``: a full first page asks to split it."""

    scan: Scan
    slice: Slice
    may_split: bool
    max_pages: int

    def to_json(self) -> dict:
        return {
            **self.scan.to_json(),
            "slice": self.slice.to_json(),
            "maySplit": self.may_split,
            "maxPages": self.max_pages,
        }

    @classmethod
    def from_json(cls, value: dict) -> PagesRequest:
        return cls(Scan.from_json(value), Slice.from_json(value["slice"]), value["maySplit"], value["maxPages"])


@dataclass(frozen=True)
class Pages:
    """What one listing call did: pages and tasks listed (``invalid`` of them skipped), where the
    slice goes on (None: it ended), the creation span seen; or ``split`` (a dense slice, nothing
    kept) or ``gone`` (Batch no longer has the job)."""

    next: str | None = None
    pages: int = 0
    listed: int = 0
    invalid: int = 0
    created: Span = None
    split: bool = False
    gone: bool = False

    def to_json(self) -> dict:
        if self.gone:
            return {"gone": True}
        if self.split:
            return {"split": True}
        return {
            "next": self.next,
            "pages": self.pages,
            "listed": self.listed,
            "invalid": self.invalid,
            "created": span_json(self.created),
        }

    @classmethod
    def from_json(cls, value: dict) -> Pages:
        if value.get("gone") or value.get("split"):
            return cls(split=bool(value.get("split")), gone=bool(value.get("gone")))
        return cls(value["next"], value["pages"], value["listed"], value["invalid"], span_of(value["created"]))


@dataclass(frozen=True)
class Listing:
    """A job's listing so far, carried from round to round: slices still to list, pages and tasks
    listed, splits made, the creation span seen, and whether Batch deleted the job mid-scan."""

    pending: tuple[Slice, ...]
    pages_needed: int
    pages: int = 0
    listed: int = 0
    splits: int = 0
    span: Span = None
    gone: bool = False

    def to_json(self) -> dict:
        value = {
            "pending": [piece.to_json() for piece in self.pending],
            "pagesNeeded": self.pages_needed,
            "pages": self.pages,
            "listed": self.listed,
            "splits": self.splits,
            "span": span_json(self.span),
        }
        return {**value, "gone": True} if self.gone else value

    @classmethod
    def from_json(cls, value: dict) -> Listing:
        return cls(
            tuple(Slice.from_json(piece) for piece in value["pending"]),
            value["pagesNeeded"],
            value["pages"],
            value["listed"],
            value["splits"],
            span_of(value["span"]),
            bool(value.get("gone")),
        )


@dataclass(frozen=True)
class ListingRound:
    """A listing sub-orchestration's input: the scan, the limits, the listing so far."""

    scan: Scan
    limits: ListingLimits
    listing: Listing

    def to_json(self) -> dict:
        return {"scan": self.scan.to_json(), "limits": self.limits.to_json(), **self.listing.to_json()}

    @classmethod
    def from_json(cls, value: dict) -> ListingRound:
        limits = ListingLimits.from_json(value.get("limits"))
        return cls(Scan.from_json(value["scan"]), limits, Listing.from_json(value))


@dataclass(frozen=True)
class Sweep:
    """Reconcile one partition with the scan's listing (an activity's input)."""

    scan: Scan
    shard: int

    def to_json(self) -> dict:
        return {**self.scan.to_json(), "shard": self.shard}

    @classmethod
    def from_json(cls, value: dict) -> Sweep:
        return cls(Scan.from_json(value), value["shard"])


@dataclass(frozen=True)
class Finish:
    """Finish's input: the scan, each partition's sweep result, what the listing found."""

    scan: Scan
    sweeps: tuple[dict, ...]
    tasks_listed: int
    pages: int
    created_span: Span

    def to_json(self) -> dict:
        return {
            **self.scan.to_json(),
            "sweeps": list(self.sweeps),
            "tasksListed": self.tasks_listed,
            "pages": self.pages,
            "createdSpan": span_json(self.created_span),
        }

    @classmethod
    def from_json(cls, value: dict) -> Finish:
        return cls(
            Scan.from_json(value),
            tuple(value["sweeps"]),
            value["tasksListed"],
            value["pages"],
            span_of(value.get("createdSpan")),
        )
