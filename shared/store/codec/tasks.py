"""A job's partitions (``{prefix}counts``): one task row per task, one counter row per partition.

Partition ``{jobKey}|{shard:02x}``; the counter row's key sorts before every task key. The counter
row's reshard marks (``shared.store.resharding.protocol``) travel with every write of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from shared.counting import COUNT_NAMES, RESULT_OF_VALUE, STATE_OF_VALUE, ZERO, Counts, TaskStatus
from shared.store.records import JobCounts, JobRecord
from shared.store.resharding.protocol import NO_MARKS, Marks, mark_fields

COUNTER_ROW = "!counts"  # '!' sorts before every character a task key can hold
DELETED = "deleted"  # a task row's State once Batch deleted the task
COUNTER_COLUMNS = [f"{name.capitalize()}{suffix}" for name in COUNT_NAMES for suffix in ("", "Slots")]


TASK_COLUMNS = ["RowKey", "State", "Result", "Slots", "Version"]


def partition_key(job_key: str, shard: int) -> str:
    return f"{job_key}|{shard:02x}"


def task_row(pk: str, task_key: str, status: TaskStatus, at: datetime) -> dict[str, Any]:
    return {
        "PartitionKey": pk,
        "RowKey": task_key,
        "State": DELETED if status.state is None else status.state.value,
        "Result": status.result.value if status.result else "",
        "Slots": status.required_slots,
        "Version": status.version,
        "UpdatedAt": at,
    }


def status_of_row(row: dict) -> TaskStatus:
    state = None if row["State"] == DELETED else STATE_OF_VALUE[row["State"]]
    result = RESULT_OF_VALUE[row["Result"]] if row.get("Result") else None
    return TaskStatus(state, result, int(row["Slots"]), row["Version"])


def counts_of_rows(tally: Mapping[tuple[str, str, int], int]) -> tuple[Counts, Counts]:
    """Task and slot counts of task rows tallied by (State, Result, Slots): a partition's rows are
    counted per kind, not one Counts per row."""
    tasks = slots = ZERO
    for (state, result, required_slots), rows in tally.items():
        status = status_of_row({"State": state, "Result": result, "Slots": required_slots, "Version": ""})
        tasks, slots = tasks + status.task_counts() * rows, slots + status.slot_counts() * rows
    return tasks, slots


def counter_row(pk: str, tasks: Counts, slots: Counts, at: datetime, marks: Marks = NO_MARKS) -> dict[str, Any]:
    """A partition's counter row; its reshard marks (shared.store.resharding.protocol) travel with every write."""
    row: dict[str, Any] = {"PartitionKey": pk, "RowKey": COUNTER_ROW, "LastUpdatedAt": at, **mark_fields(marks)}
    for name in COUNT_NAMES:
        row[name.capitalize()] = getattr(tasks, name)
        row[f"{name.capitalize()}Slots"] = getattr(slots, name)
    return row


def counts_of_row(row: dict | None) -> tuple[Counts, Counts]:
    if row is None:
        return ZERO, ZERO
    # `or 0`: a property missing from an entity may come back as null under $select
    tasks = Counts(*(int(row.get(name.capitalize()) or 0) for name in COUNT_NAMES))
    slots = Counts(*(int(row.get(f"{name.capitalize()}Slots") or 0) for name in COUNT_NAMES))
    return tasks, slots


def sum_counters(
    job: JobRecord, counters: Iterable[dict | None], counted_twice: Iterable[tuple[Counts, Counts]] = ()
) -> JobCounts:
    """A job's counts: its counter rows summed, less what a reshard's batch in flight put in two."""
    tasks, slots, updated = ZERO, ZERO, None
    for twice_tasks, twice_slots in counted_twice:
        tasks, slots = tasks - twice_tasks, slots - twice_slots
    for row in counters:
        if row is None:
            continue
        row_tasks, row_slots = counts_of_row(row)
        tasks, slots = tasks + row_tasks, slots + row_slots
        row_updated = row.get("LastUpdatedAt")
        if row_updated is not None and (updated is None or row_updated > updated):
            updated = row_updated
    return JobCounts(job, tasks, slots, updated)
