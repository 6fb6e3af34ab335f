"""Task rows and counter rows: the exactly-once write path, counts, sweeps.

A job's tasks are spread over its partitions ``{jobKey}|{shard:02x}`` (shard = crc32(taskKey) mod
partitions), each in a table of its own (shared.store.partitions). Each partition holds its task
rows (RowKey = task key) and one counter row (RowKey ``!counts``, sorting first) with that
partition's counts. A task row and the counter row it moves
change together in one entity-group transaction under ETag conditions: the exactly-once mechanism.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared.counting import Change, changes_to_apply, newest_per_task
from shared.errors import StoreUnavailableError
from shared.store import reconcile, transactions
from shared.store.codec.tasks import (
    COUNTER_COLUMNS,
    COUNTER_ROW,
    DELETED,
    TASK_COLUMNS,
    counter_row,
    counts_of_row,
    counts_of_rows,
    partition_key,
    task_row,
)
from shared.store.kept import KeptPartition, KeptPartitions, KeptRow
from shared.store.partitions import PartitionTables
from shared.store.queries import stream_rows
from shared.store.records import Observed
from shared.store.resharding import mover
from shared.store.resharding.protocol import (
    MARK_COLUMNS,
    CounterRead,
    Inconsistent,
    Marks,
    counted_twice,
    followed_elsewhere,
    marks_of,
    shard_of,
)
from shared.store.tables import (
    CONFLICT_STATUSES,
    MAX_TRANSACTION_OPERATIONS,
    RESENDABLE,
    etag_of,
    if_match,
    read_rows,
    retry_pause,
    row_etag,
    storage_call,
    unavailable,
    utc_now,
)

logger = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 10
PARTITIONS_IN_FLIGHT = 32  # a delivery over many small jobs touches as many partitions: overlap their round trips
MOVE_WAIT_SECONDS = 0.05  # a batch in flight takes two more transactions
HELP_MOVER_AFTER = 20  # waits on a row in flight (~1 s) before a writer finishes the move itself
READ_ATTEMPTS = 8


def _hand_out(changes: list[Change], group: list[tuple[Sequence[Observed], asyncio.Future]]) -> None:
    """Give each caller of a group the changes its own observations made (a change goes to a caller
    that observed exactly the status written; a caller whose observation another's newer one
    superseded made no change of its own)."""
    owner: dict[tuple[str, str], int] = {}
    for index, (observations, _) in enumerate(group):
        for observation in observations:
            owner.setdefault((observation.task_id.lower(), observation.status.version), index)
    theirs: list[list[Change]] = [[] for _ in group]
    for change in changes:
        theirs[owner.get((change.task_key, change.new.version), 0)].append(change)
    for (_, waiting), own in zip(group, theirs, strict=True):
        if not waiting.done():  # a caller cancelled meanwhile needs no answer
            waiting.set_result(own)


@dataclass(frozen=True)
class PartitionRead:
    """A partition as a write read it: its counter row and ETag, the rows of the tasks written, and
    whether those are all its task rows (then a task without a row has none)."""

    counter: dict | None
    counter_etag: str | None
    rows: dict[str, KeptRow]
    complete: bool


@dataclass(frozen=True)
class Snapshot:
    """A partition as a sweep read it: its counter row and the task rows it may correct."""

    counter: dict | None
    rows: dict[str, dict]


# What a sweep reads of each row: counts, marks, and what a correction rewrites (TaskId, MovingTo).
SWEEP_COLUMNS = TASK_COLUMNS + COUNTER_COLUMNS + MARK_COLUMNS + ["TaskId", "MovingTo"]


class TaskRows:
    def __init__(self, tables: PartitionTables):
        self.tables = tables
        self._partition_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # partition key -> observations waiting for its lock, each with its caller's future
        self._queued: dict[str, list[tuple[Sequence[Observed], asyncio.Future]]] = defaultdict(list)
        # Partitions as this process last wrote them: a write of kept rows reads nothing first.
        self._kept = KeptPartitions()

    async def apply(self, jobs: dict[str, tuple[int, list[Observed]]]) -> list[Change]:
        """Apply each job's observations (job key -> (its partitions, observations)) exactly once;
        the changes made. Partitions are written concurrently, a few at a time."""
        partitions: dict[tuple[str, int, int], list[Observed]] = defaultdict(list)
        for job_key, (count, observations) in jobs.items():
            for observation in observations:
                partitions[(job_key, shard_of(observation.task_id.lower(), count), count)].append(observation)
        in_flight = asyncio.Semaphore(PARTITIONS_IN_FLIGHT)

        async def apply_one(where: tuple[str, int, int], items: list[Observed]) -> list[Change]:
            async with in_flight:
                return await self.apply_partition(*where, items)

        results = await asyncio.gather(*(apply_one(where, items) for where, items in partitions.items()))
        return [change for applied in results for change in applied]

    async def apply_partition(
        self,
        job_key: str,
        shard: int,
        partitions: int,
        observations: Sequence[Observed],
        snapshot: Snapshot | None = None,
    ) -> list[Change]:
        """Apply observations to shard ``shard`` of ``partitions``; the changes they made. A task
        that partition no longer holds since a reshard is followed to where it went (see
        shared.store.resharding).

        One writer per partition per process, so this process never conflicts with itself; and
        whatever queued for the partition meanwhile is applied together with it (one read, one
        transaction per 99 rows): a busy partition folds its deliveries instead of queueing them.

        ``snapshot``: the partition as its caller just read it, tried first instead of reading again.

        Raises StoreUnavailableError when storage fails or stays contended; retrying the same
        observations later is always safe.
        """
        pk = partition_key(job_key, shard)
        mine: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queued[pk].append((observations, mine))
        group: list = []
        try:
            async with self._partition_locks[pk]:
                group = self._queued.pop(pk, [])  # empty when an earlier holder applied ours with its own
                if group:
                    applied, later, elsewhere = await self._apply_here(
                        job_key, shard, partitions, [o for queued, _ in group for o in queued], snapshot
                    )
            if group:  # outside the lock: tasks that moved away are applied where they are now
                followed = (
                    []
                    if later is None  # nothing is elsewhere unless the partition is sealed for a layout
                    else await asyncio.gather(
                        *(
                            self.apply_partition(
                                job_key,
                                dest,
                                later,
                                [o for queued, _ in group for o in queued if o.task_id.lower() in keys],
                            )
                            for dest, keys in elsewhere.items()
                        )
                    )
                )
                _hand_out([*applied, *(change for changes in followed for change in changes)], group)
        except BaseException as error:  # the group's callers wait on this one: tell them (they retry)
            failure = error if isinstance(error, Exception) else StoreUnavailableError(f"writing {pk} was interrupted")
            for _, waiting in group:
                if waiting is not mine and not waiting.done():
                    waiting.set_exception(failure)
            raise
        return await mine

    async def _apply_here(
        self, job_key: str, shard: int, partitions: int, observations: list[Observed], snapshot: Snapshot | None = None
    ) -> tuple[list[Change], int | None, dict[int, set[str]]]:
        """Under the partition's lock: apply what belongs here; return the changes, and where the
        partition was sealed for (the tasks to follow there, by destination shard). Read, route,
        wait for a batch in flight, commit; read afresh and again on a conflict."""
        pk = partition_key(job_key, shard)
        newest = newest_per_task((o.task_id.lower(), o.status) for o in observations)
        display_ids: dict[str, str] = {}
        for observation in observations:
            display_ids.setdefault(observation.task_id.lower(), observation.task_id)
        applied: dict[str, Change] = {}
        attempt = waits = 0
        while attempt < CONFLICT_ATTEMPTS:
            read = await self._read_partition(pk, list(newest), partitions, snapshot if attempt == 0 else None, attempt)
            marks = marks_of(read.counter)
            later = marks.next_layout(partitions)
            elsewhere = followed_elsewhere(newest, read.rows, shard, later)
            away = set().union(*elsewhere.values())
            here = {key: status for key, status in newest.items() if key not in away}
            if any(read.rows[key].moving for key in here if key in read.rows):  # a batch in flight
                waits += 1
                await self._wait_for_move(job_key, shard, waits)
                continue
            changes = changes_to_apply({key: row.status for key, row in read.rows.items()}, here)
            try:
                written_counter, written_etag, written = await self._commit(
                    pk, changes, read.rows, read.counter, read.counter_etag, marks, display_ids, applied
                )
                self._kept.keep(
                    pk, written_counter, written_etag, {**read.rows, **written}, read.complete, since=read.counter_etag
                )
                return list(applied.values()), later, elsewhere
            except HttpResponseError as error:
                self._kept.forget(pk)
                if error.status_code not in CONFLICT_STATUSES:
                    raise unavailable(error, "writing task rows") from error
                logger.debug("partition changed under us; re-reading", extra={"partition": pk, "attempt": attempt})
            except AzureError as error:
                self._kept.forget(pk)
                raise unavailable(error, "writing task rows") from error
            await retry_pause(attempt)
            attempt += 1
        raise StoreUnavailableError(f"partition {pk} stayed contended after {CONFLICT_ATTEMPTS} attempts")

    async def _read_partition(
        self, pk: str, keys: list[str], partitions: int, snapshot: Snapshot | None, attempt: int
    ) -> PartitionRead:
        """What a write needs of a partition: its counter row and the rows of ``keys`` it holds --
        from the caller's ``snapshot`` (unless the partition is sealed: there a task without a row is
        followed elsewhere, so absent rows must really be absent), else from what this process kept
        of its last write (first attempt only), else from storage. A stale one is never applied: the
        counter's ETag and the rows' conditions make the write fail, and the next attempt reads."""
        if snapshot is not None and not marks_of(snapshot.counter).next_layout(partitions):
            rows = {key: KeptRow.of_entity(snapshot.rows[key]) for key in keys if key in snapshot.rows}
            return PartitionRead(snapshot.counter, row_etag(snapshot.counter), rows, complete=False)
        kept = self._kept.get(pk) if attempt == 0 else None
        if kept is not None:
            return await self._read_kept(pk, kept, keys, partitions)
        async with storage_call("reading task rows"):
            # The counter row apart: it sorts first, and a range read of the task keys must not span to it.
            counter, read = await asyncio.gather(
                mover.read_counter(self.tables, pk), read_rows(self.tables.of(pk), pk, keys)
            )
        rows = {key: KeptRow.of_entity(row) for key, row in read.items()}
        # every write moves the counter row: none, no task rows
        return PartitionRead(counter, row_etag(counter), rows, complete=counter is None)

    async def _read_kept(self, pk: str, kept: KeptPartition, keys: list[str], partitions: int) -> PartitionRead:
        """The partition as this process last wrote it; rows it never saw are read, unless it knows
        every row (then an absent row is absent). In a sealed partition a task without a row is sent
        elsewhere, with no write here to prove the row absent: there only a read says so."""
        rows = {key: kept.rows[key] for key in keys if key in kept.rows}
        complete = kept.complete and not marks_of(kept.counter).next_layout(partitions)
        missing = [] if complete else [key for key in keys if key not in rows]
        if missing:
            async with storage_call("reading task rows"):
                read = await read_rows(self.tables.of(pk), pk, missing)
            rows.update((key, KeptRow.of_entity(row)) for key, row in read.items())
        return PartitionRead(kept.counter, kept.etag, rows, complete)

    async def _wait_for_move(self, job_key: str, shard: int, waits: int) -> None:
        """A batch of the partition's rows is in flight (two more transactions): wait for it; after
        a while, finish it ourselves, in case its mover stopped."""
        if waits % HELP_MOVER_AFTER == 0:
            await mover.finish_batch(self.tables, job_key, shard)
        await asyncio.sleep(MOVE_WAIT_SECONDS)

    async def _commit(
        self,
        pk: str,
        changes: list[Change],
        rows: dict[str, KeptRow],
        counter: dict | None,
        counter_etag: str | None,
        marks: Marks,
        display_ids: dict[str, str],
        applied: dict[str, Change],
    ) -> tuple[dict | None, str | None, dict[str, KeptRow]]:
        """Write changes in transactions of <= 100 operations, each moving the counter row too; the
        counter row and its ETag as they now are, and the task rows written."""
        if counter_etag is None:  # the partition's first write: its table may not exist yet
            await self.tables.create(pk)
        tasks, slots = counts_of_row(counter)
        written: dict[str, KeptRow] = {}
        per_transaction = MAX_TRANSACTION_OPERATIONS - 1
        for start in range(0, len(changes), per_transaction):
            chunk = changes[start : start + per_transaction]
            at = utc_now()  # one stamp for a transaction's rows
            operations: list[tuple] = []
            for change in chunk:
                row = task_row(pk, change.task_key, change.new, at)
                existing = rows.get(change.task_key)
                if existing is None:
                    row["TaskId"] = display_ids[change.task_key]
                    operations.append(("create", row))
                else:
                    row["TaskId"] = existing.display_id(change.task_key)
                    operations.append(("update", row, if_match(existing.etag)))
                tasks, slots = tasks + change.task_delta, slots + change.slot_delta
            counter_update = counter_row(pk, tasks, slots, at, marks)
            operations.append(
                ("create", counter_update)
                if counter_etag is None
                else ("update", counter_update, if_match(counter_etag))
            )
            results = await transactions.submit(self.tables.of(pk), operations, **RESENDABLE)
            counter, counter_etag = counter_update, results[-1]["etag"]
            applied.update((change.task_key, change) for change in chunk)
            for change, (_, row, *_), result in zip(chunk, operations, results, strict=False):
                if result["etag"] is not None:
                    written[change.task_key] = KeptRow.written(
                        change.task_key, change.new, row["TaskId"], result["etag"]
                    )
        return counter, counter_etag, written

    # ---- counts ----------------------------------------------------------------------------

    async def job_counters(self, job_key: str, partitions: int) -> tuple[list[dict | None], list[tuple]]:
        """The job's counter rows, and the counts a reshard's batch in flight put in two of them.

        Read in rounds: the ``partitions`` the caller knows of, then, where those were sealed for
        more, the partitions rows moved to, and so on (a destination is always read after its
        source). Read again while a move finishes between the reads (see protocol.counted_twice).
        """
        for _ in range(READ_ATTEMPTS):
            reads: list[CounterRead] = []
            low, high, round_number = 0, partitions, 0
            while low < high:
                rows = await self._counter_rows(job_key, range(low, high))
                shards = range(low, high)
                reads += [CounterRead(shard, round_number, row) for shard, row in zip(shards, rows, strict=True)]
                sealed_for = [count for read in reads if (count := marks_of(read.row).next_layout(high))]
                low, high, round_number = high, min(sealed_for, default=high), round_number + 1
            try:
                twice = counted_twice(reads)
            except Inconsistent:
                continue
            if twice:  # still in flight on the source, read again now: then the copies had not changed
                sources = await self._counter_rows(job_key, sorted({source for source, _ in twice.values()}))
                in_flight = {marks_of(row).move_out for row in sources}
                if not all(batch in in_flight for _, batch in twice.values()):
                    continue
            return [read.row for read in reads], [marks_of(reads[dest].row).moved_in for dest in twice]
        raise StoreUnavailableError(f"counts of job {job_key} kept moving during a reshard")

    async def _counter_rows(self, job_key: str, shards: Iterable[int]) -> list[dict | None]:
        """Counter rows, read concurrently (None for a partition with none yet)."""
        return list(
            await asyncio.gather(*(mover.read_counter(self.tables, partition_key(job_key, shard)) for shard in shards))
        )

    async def partition_rows(self, job_key: str, shard: int) -> AsyncIterator[dict]:
        """Every row of one of a job's partitions, as stored (tests check counter rows with it)."""
        pk = partition_key(job_key, shard)
        try:
            async for row in self.tables.of(pk).query_entities("PartitionKey eq @pk", parameters={"pk": pk}):
                yield row
        except ResourceNotFoundError:  # no table: never written
            return

    # ---- validation ------------------------------------------------------------------------

    async def reconcile_partition(
        self, job_key: str, shard: int, partitions: int, listed: dict, scan_started_ticks: int, job_id: str
    ) -> dict[str, int]:
        """Correct one partition from a listing; newer stored rows (events that overtook the scan) stay.

        1. Read the partition; if the counter row disagrees with the sum of its task rows and no
           write landed while reading (the counter's ETag is unchanged), repair the counter.
        2. Apply what ``reconcile.corrections`` decides through the same ETag-guarded path as events.
        """
        pk = partition_key(job_key, shard)
        stored, counter_fixed, snapshot = await self._check_counter(pk, listed)
        observations = reconcile.corrections(job_id, listed, stored, scan_started_ticks)
        changes = await self.apply_partition(job_key, shard, partitions, observations, snapshot) if observations else []
        return {
            "checked": len(listed),
            **reconcile.drift(changes),
            "countersRepaired": int(counter_fixed is True),
            "counterCheckDeferred": int(counter_fixed is None),
        }

    async def _check_counter(
        self, pk: str, listed: dict
    ) -> tuple[dict[str, tuple[str, bool]], bool | None, Snapshot | None]:
        """Stream a partition; repair its counter row if it disagrees with the task rows.

        Returns each task row's (version, deleted) -- all a sweep needs to compare with a listing;
        only the rows that differ from ``listed`` are kept (the corrections' first attempt writes
        from them, without reading them again), so memory stays small for large partitions --
        True (repaired), False (it was right) or None (writes kept landing while reading, so there
        was no consistent snapshot: the check is deferred to a later pass), and the snapshot.
        """
        versions: dict[str, tuple[str, bool]] = {}
        for _ in range(3):
            async with storage_call("checking a counter row"):
                counter, versions = None, {}
                differing: dict[str, dict] = {}
                tally: Counter[tuple[str, str, int]] = Counter()
                try:
                    async for row in stream_rows(self.tables.of(pk), "PartitionKey eq @pk", {"pk": pk}, SWEEP_COLUMNS):
                        for name in [name for name, value in row.items() if value is None]:
                            del row[name]  # Azure answers a selected column a row lacks with null
                        key = row["RowKey"]
                        if key == COUNTER_ROW:
                            counter = row
                            continue
                        tally[(row["State"], row.get("Result") or "", row["Slots"])] += 1
                        version = row["Version"]
                        versions[key] = (version, row["State"] == DELETED)
                        if key not in listed or listed[key][1].version != version:
                            differing[key] = row
                except ResourceNotFoundError:  # no table: the partition was never written
                    pass
                tasks, slots = counts_of_rows(tally)
                if counts_of_row(counter) == (tasks, slots):
                    return versions, False, Snapshot(counter, differing)
                # The counter row sorts first, so it was read before every task row, and every
                # write to a partition moves it: if its ETag still holds, the rows read are one
                # consistent snapshot and the conditional write below proves it.
                try:
                    async with self._partition_locks[pk]:
                        repaired = counter_row(pk, tasks, slots, utc_now(), marks_of(counter))
                        table = self.tables.of(pk)
                        if counter is None:
                            await table.create_entity(repaired, **RESENDABLE)
                        else:
                            await table.update_entity(repaired, **if_match(etag_of(counter)))
                        self._kept.forget(pk)
                    logger.warning(
                        "counter row repaired",
                        extra={"partition": pk, "was": str(counts_of_row(counter)[0]), "now": str(tasks)},
                    )
                    return versions, True, None
                except (ResourceModifiedError, ResourceExistsError):
                    continue
        return versions, None, None

    async def drop_job(self, job_key: str, partitions: int) -> None:
        """Delete every task and counter row of a job: its partitions' tables."""
        for shard in range(partitions):
            pk = partition_key(job_key, shard)
            self._kept.forget(pk)
            await self.tables.drop(pk)
