"""How many partitions a job's rows spread over, and how a reshard stays exactly-once, pure.

A job starts with partitions sized for it (one for a small job) and grows by whole multiples: a
task in shard ``s`` of ``P`` partitions lands in a shard ``d`` of ``P' = k*P`` with
``d mod P == s``, so each old partition (a *source*) only ever hands rows to its own new ones
(*destinations*). Rows move in batches of at most 99, three transactions each, and the counter rows
carry *marks* that let writers and readers see where a move stands:

* on a source: ``Splits`` (the partition counts it was sealed for, growing; once sealed, no new
  task bound elsewhere is created in it), ``MoveOut``/``MoveTo``/``MoveKeys`` (the batch in flight,
  its destination and task keys), ``MoveDone`` (the last batch finished);
* on a task row in flight: ``MovingTo`` (writers wait for it, or finish the batch themselves);
* on a destination: ``MoveIn``/``MoveFrom`` (the last batch received and its source) and the counts
  that batch brought (``MoveIn<Count>``), so a reader can take them off again.

Batch ``M`` of source ``s``: (1) mark its rows moving and set ``MoveOut=M`` on ``s``; (2) insert them
in ``d`` and add their counts to ``d`` with ``MoveIn=M``; (3) delete them from ``s``, take their
counts off ``s``, ``MoveDone=M``. Between (2) and (3) the rows count in both, frozen (no writer
touches a moving row, nor its copy, which writers only look for once the source lacks the row).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.config import MAX_JOB_PARTITIONS as MAX_PARTITIONS
from shared.counting import COUNT_NAMES, ZERO, Counts

ROWS_PER_PARTITION = 20_000  # Azure serves ~2,000 entities/s per partition; 20,000 rows keep a sweep short
COUNT_COLUMNS = tuple(name.capitalize() for name in COUNT_NAMES)
MARK_COLUMNS = [
    "Splits",
    "MoveOut",
    "MoveTo",
    "MoveDone",
    "MoveIn",
    "MoveFrom",
    "MoveKeys",
    *(f"MoveIn{name}{suffix}" for name in COUNT_COLUMNS for suffix in ("", "Slots")),
]


def partitions_for(tasks: int, rows_per_partition: int, current: int = 1, most: int = MAX_PARTITIONS) -> int:
    """The partitions a job of ``tasks`` tasks should have: ``current`` doubled until each holds at
    most ``rows_per_partition`` rows (a multiple of ``current``, so rows only ever move to new
    partitions), never fewer than ``current`` and not over ``most`` (unless ``current`` already is)."""
    partitions = current
    while partitions * 2 <= most and partitions * rows_per_partition < tasks:
        partitions *= 2
    return partitions


def reshard_target(tasks: int, rows_per_partition: int, partitions: int, resharding_to: int | None) -> int | None:
    """The partition count a pass moves a job of ``tasks`` tasks to, or None if it fits where it is.
    A reshard left unfinished (a failed pass) is finished as it began: its sources are sealed for it."""
    wanted = resharding_to or partitions_for(tasks, rows_per_partition, partitions)
    return wanted if wanted > partitions else None


def shard_of(task_key: str, partitions: int) -> int:
    return zlib.crc32(task_key.encode()) % partitions


def followed_elsewhere(
    keys: Iterable[str], present: Iterable[str], shard: int, later: int | None
) -> dict[int, set[str]]:
    """Tasks a partition sealed for ``later`` partitions does not hold and no longer would: where
    each is looked for instead (destination shard -> task keys). A task with a row here stays here,
    and so does one that would land here in the later layout too."""
    if not later:
        return {}
    present = set(present)
    elsewhere: dict[int, set[str]] = {}
    for key in keys:
        if key not in present and (dest := shard_of(key, later)) != shard:
            elsewhere.setdefault(dest, set()).add(key)
    return elsewhere


@dataclass(frozen=True)
class Marks:
    """What a counter row says of moves (all zero/empty on a partition never resharded)."""

    splits: tuple[int, ...] = ()
    move_out: int = 0
    move_to: int = 0
    move_done: int = 0
    move_in: int = 0
    move_from: int = 0
    move_keys: tuple[str, ...] = ()  # the task keys of the batch in flight
    moved_in: tuple[Counts, Counts] = field(default=(ZERO, ZERO))

    def next_layout(self, partitions: int) -> int | None:
        """The partition count this partition hands rows to after ``partitions``; None if sealed for none."""
        return min((count for count in self.splits if count > partitions), default=None)

    @property
    def latest_layout(self) -> int:
        return max(self.splits, default=0)


NO_MARKS = Marks()


def marks_of(row: dict | None) -> Marks:
    if row is None or not (row.get("Splits") or row.get("MoveIn")):
        return NO_MARKS

    def counts(suffix: str) -> Counts:
        return Counts(*(int(row.get(f"MoveIn{name}{suffix}") or 0) for name in COUNT_COLUMNS))

    return Marks(
        splits=tuple(int(part) for part in str(row["Splits"]).split()),
        move_out=int(row.get("MoveOut") or 0),
        move_to=int(row.get("MoveTo") or 0),
        move_done=int(row.get("MoveDone") or 0),
        move_in=int(row.get("MoveIn") or 0),
        move_from=int(row.get("MoveFrom") or 0),
        move_keys=tuple(str(row.get("MoveKeys") or "").split()),
        moved_in=(counts(""), counts("Slots")),
    )


def mark_fields(marks: Marks) -> dict:
    """A counter row's mark properties (none for a partition never resharded)."""
    if marks == NO_MARKS:
        return {}
    fields = {
        "Splits": " ".join(str(count) for count in marks.splits),
        "MoveOut": marks.move_out,
        "MoveTo": marks.move_to,
        "MoveDone": marks.move_done,
        "MoveIn": marks.move_in,
        "MoveFrom": marks.move_from,
        "MoveKeys": " ".join(marks.move_keys),
    }
    tasks, slots = marks.moved_in
    for name, in_tasks, in_slots in zip(COUNT_COLUMNS, tasks.as_dict().values(), slots.as_dict().values(), strict=True):
        fields[f"MoveIn{name}"], fields[f"MoveIn{name}Slots"] = in_tasks, in_slots
    return fields


@dataclass(frozen=True)
class CounterRead:
    """One counter row as a reader got it, and in which round of reads (sources before destinations)."""

    shard: int
    round: int
    row: dict | None


class Inconsistent(Exception):
    """The counter rows read are no one picture of the job (a move finished between reads): read again."""


def counted_twice(reads: list[CounterRead]) -> dict[int, tuple[int, int]]:
    """Destinations whose last batch the reads count in its source too: destination -> (source, batch).

    Round 0 is the partition count the job's row gave: a reshard to it finished before the row said
    so, so only the partitions found since (through seals) can be mid-move.

    Exact when each destination's last batch is finished on its source as read (``MoveDone``). When
    the source as read still had that very batch in flight (``MoveOut``), the rows were frozen and
    count twice: the caller takes the batch's counts off, once it has read the source again and
    found the batch still in flight (so the copy had not changed when the destination was read).
    Anything else -- a source read no earlier than its destination, or batches finished between the
    reads -- raises Inconsistent.
    """
    by_shard = {read.shard: read for read in reads}
    twice: dict[int, tuple[int, int]] = {}
    for read in reads:
        marks = marks_of(read.row)
        if not marks.move_in or read.round == 0:  # round 0: the settled layout, its moves all finished
            continue
        source = by_shard.get(marks.move_from)
        if source is None or source.round >= read.round:
            raise Inconsistent(f"shard {read.shard} was read no later than its source")
        source_marks = marks_of(source.row)
        if marks.move_in <= source_marks.move_done:
            continue
        if marks.move_in != source_marks.move_out:
            raise Inconsistent(f"moves into shard {read.shard} finished between the reads")
        twice[read.shard] = (marks.move_from, marks.move_in)
    return twice
