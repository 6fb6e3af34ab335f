"""What this process knows of the partitions it wrote last: their counter rows and task rows.

Every write to a partition's rows moves its counter row in the same transaction (events,
corrections, reshard steps alike), and every write of the path in shared.store.tasks is
conditional: a task row is created only if absent, replaced only under its ETag, and the counter
row likewise. So while the counter row's ETag is the one this process last wrote, the rows it kept
are the partition's rows; and if it is not, the next transaction fails (412/409/404) and the
partition is read afresh. Kept rows therefore save reads, never decide a write alone.

A partition is *complete* when every task row it holds is kept (it was empty when this process
first wrote it, and nothing of it was let go since): then a task without a kept row has none, and a
delivery of new tasks is written without reading first. Bounded: at most ROWS_KEPT rows in all, the
partitions least recently written letting theirs go first (their counter rows stay kept).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.counting import TaskStatus
from shared.store.codec.tasks import status_of_row
from shared.store.tables import etag_of

ROWS_KEPT = 20_000  # ~0.4 KB each: a few MB however many partitions a process writes
PARTITIONS_KEPT = 4096  # counter rows kept


class KeptRow(NamedTuple):
    """A task row as the write path needs it."""

    status: TaskStatus
    task_id: str | None  # the display id, where it differs from the row key
    etag: str
    moving: bool  # a reshard's batch in flight holds it (MovingTo)

    @classmethod
    def of_entity(cls, row: dict) -> KeptRow:
        return cls.written(row["RowKey"], status_of_row(row), row.get("TaskId"), etag_of(row), "MovingTo" in row)

    @classmethod
    def written(cls, key: str, status: TaskStatus, task_id: str | None, etag: str, moving: bool = False) -> KeptRow:
        return cls(status, None if task_id == key else task_id, etag, moving)

    def display_id(self, key: str) -> str:
        return key if self.task_id is None else self.task_id


@dataclass
class KeptPartition:
    counter: dict
    etag: str
    rows: dict[str, KeptRow] = field(default_factory=dict)
    complete: bool = False


class KeptPartitions:
    def __init__(self, rows_kept: int = ROWS_KEPT, partitions_kept: int = PARTITIONS_KEPT):
        self._rows_kept, self._partitions_kept = rows_kept, partitions_kept
        self._partitions: OrderedDict[str, KeptPartition] = OrderedDict()
        self._rows = 0

    @property
    def rows(self) -> int:
        return self._rows

    def get(self, pk: str) -> KeptPartition | None:
        return self._partitions.get(pk)

    def keep(
        self,
        pk: str,
        counter: dict | None,
        etag: str | None,
        rows: dict[str, KeptRow],
        complete: bool,
        since: str | None,
    ) -> None:
        """The partition as this process just wrote or read it: its counter row and that row's ETag,
        the task rows it learnt, whether those are all the partition's rows (an empty partition's first
        write), and ``since``: the counter ETag it read or wrote from. Rows kept under ``since`` are
        still the partition's (the write moved the counter from there), the rest are let go."""
        if counter is None or etag is None:
            self.forget(pk)
            return
        kept = self._partitions.get(pk)
        if kept is not None and since is not None and kept.etag == since:
            self._rows -= len(kept.rows)
            kept.rows.update(rows)
            kept.counter, kept.etag = counter, etag
        else:
            self.forget(pk)
            kept = self._partitions[pk] = KeptPartition(counter, etag, dict(rows), complete)
        self._rows += len(kept.rows)
        self._partitions.move_to_end(pk)
        self._bound()

    def forget(self, pk: str) -> None:
        kept = self._partitions.pop(pk, None)
        if kept is not None:
            self._rows -= len(kept.rows)

    def _bound(self) -> None:
        while len(self._partitions) > self._partitions_kept:
            self.forget(next(iter(self._partitions)))
        for kept in self._partitions.values():  # least recently written first, the newest last
            if self._rows <= self._rows_kept:
                return
            self._rows -= len(kept.rows)
            kept.rows, kept.complete = {}, False
