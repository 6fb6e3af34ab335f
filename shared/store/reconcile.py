"""What a validation sweep corrects in one partition, decided purely from what was listed and stored.

The decision only chooses observations; they then go through the same ETag-guarded write path as
events, which re-reads each row and decides again, so a row that changed since is judged anew.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.counting import Change, TaskStatus
from shared.store.records import Observation

DRIFT_KINDS = ("missing", "stale", "removed")


def corrections(
    job_id: str,
    listed: Mapping[str, tuple[str, TaskStatus]],
    stored: Mapping[str, tuple[str, bool]],
    scan_started_ticks: int,
) -> list[Observation]:
    """Observations that bring the stored rows in line with a listing.

    ``listed``: task key -> (task id, status) as List Tasks showed it; ``stored``: task key ->
    (version, deleted) as the partition holds it. A listed task newer than its row (or without
    one) is observed as listed. A stored, undeleted task the listing lacks was deleted from Batch
    -- unless its row is newer than the scan's start: an event for a task added after the scan
    began, which no slice could list.
    """
    found = [
        Observation(job_id, task_id, status)
        for key, (task_id, status) in listed.items()
        if key not in stored or status.version > stored[key][0]
    ]
    removed = TaskStatus.observed(scan_started_ticks, 0, None, None, 1)
    found += [
        Observation(job_id, key, removed)
        for key, (version, deleted) in stored.items()
        if key not in listed and not deleted and version < removed.version
    ]
    return found


def drift(changes: list[Change]) -> dict[str, int]:
    """What the applied corrections were: tasks added, brought up to date, removed."""
    return {
        "missing": sum(change.old is None and not change.new.deleted for change in changes),
        "stale": sum(change.old is not None and not change.new.deleted for change in changes),
        "removed": sum(change.new.deleted for change in changes),
    }
