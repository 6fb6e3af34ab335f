"""Validation's workflow as pure, deterministic generators (no I/O, clock or environment).

Function folders wrap them with ``df.Orchestrator.create``; the names below are the function
folders they call, and a test checks each one exists with the right trigger. What the steps hand
each other is typed in ``shared.validation.payloads``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from typing import Any

from shared.validation.payloads import (
    SLICES_PER_LISTING,
    Action,
    Begin,
    Finish,
    JobPass,
    Listing,
    ListingRound,
    Move,
    Pages,
    PagesRequest,
    ReshardPlan,
    Scan,
    Slice,
    Span,
    Sweep,
    begun,
)

REMOVE_JOBS = "ValidateCountsCleanup"
REMOVE_JOB = "ValidateCountsRemoveJob"
VALIDATE_JOB = "ValidateJobOrchestrator"
LIST_SLICES = "ValidateJobListing"
BEGIN = "ValidateJobBegin"
RESHARD = "ValidateJobReshard"
LIST_PAGES = "ValidateJobPages"
SWEEP = "ValidateJobSweep"
FINISH = "ValidateJobFinish"

REMOVAL_INSTANCE_ID = "validate-counts-removals"  # one clean-up at a time


def on_demand_instance_id(job_key: str) -> str:
    return f"validate-job-{job_key}"


def remove_jobs(context) -> Generator[Any, Any, list]:
    """Clean up the jobs the scheduled pass found gone from Batch or past retention, in parallel."""
    return (yield context.task_all([context.call_activity(REMOVE_JOB, job) for job in context.get_input()]))


SPLIT_PARTS = 4  # a dense creation-time slice becomes this many
# Slices a large job's listing may be split into, per page in flight (ListingLimits.slices_per_listing,
# default 4). Tasks are added in bursts, so equal cuts of their creation times are unequal in tasks,
# and a slice that has begun paging cannot be cut (List Tasks' order is undocumented): with as many
# slices as pages in flight, a 1,000,000-task job added at once listed with ~4.8 of 8 pages in
# flight; with four times as many, ~6.4. Each split re-lists a page and leaves empty slices, so a job
# gets more slices than pages in flight only where each would still hold this many pages.
#
# Pages of one slice one activity call lists in a row (ListingLimits.pages_per_call, default 4;
# fewer where the slice ends). Each call is an orchestration step that replays the round's history
# (the Python worker parses every event of it again), so one page a call spent ~12 ms of a
# 1,000,000-task pass's CPU per page on replays, about as much as parsing the page; four a call
# spend a quarter of that. A restart lists again at most the pages of the calls it interrupted.
#
# Calls one listing sub-orchestration starts before handing back (ListingLimits.calls_per_round,
# default 32). An orchestration's whole history is replayed at every step, so one history holding a
# 1,000,000-task job's listing made its cost grow with the square of the job's size; in rounds, each
# history stays short.


def slice_limit(parallel: int, pages_needed: int, slices_per_listing: int = SLICES_PER_LISTING) -> int:
    """How many slices a listing may be split into (splitting stops there): as many as pages in
    flight, up to ``slices_per_listing`` times that for a job of enough pages; never more than its pages."""
    more = min(parallel * slices_per_listing, pages_needed // slices_per_listing)
    return min(pages_needed, max(parallel, more))


MAX_RESHARDS = 3  # a job that grows while it is resharded is grown again, a few times per pass


def initial_slices(created_ticks: int, scan_started_ticks: int, count: int) -> list[Slice]:
    """The job's creation times, [its creation, the scan's start), cut into ``count`` equal slices.

    A task's creation time never changes, so the slices partition the tasks however their states
    move during the scan: each task is listed exactly once. Tasks created after the scan started
    are left out (their events are newer than the scan; the sweep keeps them)."""
    low, high = created_ticks, max(scan_started_ticks, created_ticks + 1)
    return split_slice(Slice(low, high), count)


def planned_slices(created_ticks: int, scan_started_ticks: int, count: int, known_span: Span) -> list[Slice]:
    """Like ``initial_slices``, but where the last pass saw the job's tasks created (``known_span``:
    first and last creation tick) only that span is cut into ``count``; before and after it one slice
    each (usually empty, or the tasks added since), so a job validated long after its tasks were
    added does not pay for listing empty time."""
    if not known_span or not created_ticks <= known_span[0] <= known_span[1] < scan_started_ticks:
        return initial_slices(created_ticks, scan_started_ticks, count)
    first, after_last = known_span[0], known_span[1] + 1
    before = [Slice(created_ticks, first)] if first > created_ticks else []
    later = [Slice(after_last, scan_started_ticks)] if after_last < scan_started_ticks else []
    return before + split_slice(Slice(first, after_last), count) + later


def widened(span: Span, other: Span) -> Span:
    """The smallest (first, last) creation-tick span holding both (None: no task seen)."""
    if span is None or other is None:
        return other or span
    return (min(span[0], other[0]), max(span[1], other[1]))


def split_slice(piece: Slice, parts: int) -> list[Slice]:
    """Cut a slice into up to ``parts`` non-empty, adjacent, half-open ranges (the same tick never
    falls in two: a boundary tick belongs to the slice it starts)."""
    low, high = piece.low, piece.high
    parts = max(1, min(parts, high - low))
    bounds = [low + (high - low) * n // parts for n in range(parts)] + [high]
    return [Slice(bounds[n], bounds[n + 1]) for n in range(parts)]


def validate_job(context) -> Generator[Any, Any, dict]:
    """One job: begin (and, where the job outgrew its partitions, move rows to more, one activity per
    partition, in parallel); List Tasks fanned out over creation-time slices, at most ``parallelListings``
    pages in flight, a slice whose first page is full split further, each slice paged in order with
    its next link carried from call to call and round to round (``list_slices``; a restart resumes
    after finished calls); the partitions' sweeps in parallel; finish."""
    job_pass = JobPass.from_json(context.get_input())
    job = job_pass.job
    try:
        scan = begun((yield context.call_activity(BEGIN, Begin(job).to_json())))
        for _ in range(MAX_RESHARDS):  # the job outgrew its partitions: move rows, then begin again
            if not isinstance(scan, ReshardPlan):
                break
            context.set_custom_status(
                {"jobId": job.job_id, "phase": "resharding", "partitions": scan.partitions, "target": scan.target}
            )
            yield context.task_all(
                [context.call_activity(RESHARD, Move(scan, shard).to_json()) for shard in range(scan.partitions)]
            )
            scan = begun((yield context.call_activity(BEGIN, Begin(job, scan.target).to_json())))
        if not isinstance(scan, Scan):  # skipped, removed, or still growing
            return scan.to_json() if isinstance(scan, ReshardPlan) else scan
        listing = first_listing(scan)
        while listing.pending:
            round_input = ListingRound(scan, job_pass.limits, listing).to_json()
            listing = Listing.from_json((yield context.call_sub_orchestrator(LIST_SLICES, round_input)))
            if listing.gone:  # Batch deleted the job mid-scan
                return (yield context.call_activity(REMOVE_JOB, job.removed_because("JobNotFound").to_json()))
            context.set_custom_status(
                {
                    "jobId": job.job_id,
                    "phase": "listing",
                    "pages": listing.pages,
                    "tasksListed": listing.listed,
                    "expectedTasks": scan.expected_tasks,
                    "slicesPending": len(listing.pending),
                    "splits": listing.splits,
                }
            )
        context.set_custom_status(
            {
                "jobId": job.job_id,
                "phase": "sweeping",
                "pages": listing.pages,
                "tasksListed": listing.listed,
                "partitions": scan.partitions,
            }
        )
        sweeps = yield context.task_all(
            [context.call_activity(SWEEP, Sweep(scan, shard).to_json()) for shard in range(scan.partitions)]
        )
        finish = Finish(scan, tuple(sweeps), listing.listed, listing.pages, listing.span)
        return (yield context.call_activity(FINISH, finish.to_json()))
    except Exception as error:  # a failed activity: report it, so sibling jobs in a wave still finish
        return {"jobId": job.job_id, "action": Action.FAILED, "error": str(error).strip()[:500]}


def first_listing(scan: Scan) -> Listing:
    """No more slices than the job has pages (a small job costs no empty listings). Where the last
    pass saw the tasks created, that span is cut for the whole fan-out; otherwise half of it,
    leaving room to split the slice the tasks turn out to crowd into."""
    parallel, known_span = scan.parallel_listings, scan.known_span
    count = min(parallel if known_span else max(1, parallel // 2), scan.pages_needed)
    slices = planned_slices(scan.created_ticks, scan.scan_started_ticks, count, known_span)
    return Listing(tuple(slices), scan.pages_needed)


def list_slices(context) -> Generator[Any, Any, dict]:
    """One round of a job's listing (a sub-orchestration of ``validate_job``): at most
    ``parallelListings`` calls in flight, each listing up to ``pages_per_call`` pages of one slice,
    the next one started as soon as any finishes (a slow call holds no other back), until
    ``calls_per_round`` calls were started or no slice is pending (see ``ListingLimits``); a slice
    whose first page is full is split instead (while fewer slices are left than ``slice_limit``
    allows), each slice pages on in order with its next link carried in the returned state."""
    round_input = ListingRound.from_json(context.get_input())
    scan, limits, listing = round_input.scan, round_input.limits, round_input.listing
    pending = list(listing.pending)
    parallel = scan.parallel_listings
    most_slices = slice_limit(parallel, listing.pages_needed, limits.slices_per_listing)
    in_flight: dict = {}  # call -> the slice it lists
    started = 0
    while in_flight or (pending and started < limits.calls_per_round):
        while pending and len(in_flight) < parallel and started < limits.calls_per_round:
            piece = pending.pop(0)
            # each split costs one page (listed again by the parts); never more slices than pages
            may_split = len(in_flight) + 1 + len(pending) < most_slices
            request = PagesRequest(scan, piece, may_split, limits.pages_per_call)
            in_flight[context.call_activity(LIST_PAGES, request.to_json())] = piece
            started += 1
        done = yield context.task_any(list(in_flight))
        piece, result = in_flight.pop(done), done.result
        if isinstance(result, Exception):  # task_any hands back a failed call too, its error as the result
            raise result
        pages = Pages.from_json(result)
        if pages.gone:
            return replace(listing, pending=(), gone=True).to_json()
        if pages.split:
            listing = replace(listing, splits=listing.splits + 1)
            pending += split_slice(piece, SPLIT_PARTS)
            continue
        listing = replace(
            listing,
            pages=listing.pages + pages.pages,
            listed=listing.listed + pages.listed,
            span=widened(listing.span, pages.created),
        )
        if pages.next:
            pending.append(replace(piece, next=pages.next, pages=piece.pages + pages.pages))
    return replace(listing, pending=tuple(pending)).to_json()
