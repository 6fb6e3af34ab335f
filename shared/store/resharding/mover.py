"""Moving a job's rows to more partitions while deliveries keep arriving (the protocol and its marks
are described in shared.store.resharding.protocol). Every step reads, decides and writes under ETags, so any
number of movers -- and writers that find a batch in flight and finish it -- can run at once, and a
mover stopped anywhere is resumed by the next."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.counting import counts_of
from shared.errors import StoreUnavailableError
from shared.store.codec.tasks import COUNTER_ROW, counter_row, counts_of_row, partition_key, status_of_row
from shared.store.partitions import PartitionTables
from shared.store.resharding.protocol import marks_of, shard_of
from shared.store.tables import (
    CONFLICT_STATUSES,
    MAX_TRANSACTION_OPERATIONS,
    RESENDABLE,
    etag_of,
    if_match,
    read_rows,
    retry_pause,
    storage_call,
    utc_now,
)

logger = logging.getLogger(__name__)

MOVE_ATTEMPTS = 20
BATCH_ROWS = MAX_TRANSACTION_OPERATIONS - 1  # and the counter row


_AGAIN = object()  # a step's answer: the state moved under it, read again (no pause)


async def read_counter(tables: PartitionTables, pk: str) -> dict | None:
    """A partition's counter row; None for a partition with none yet (or no table yet)."""
    try:
        return await tables.of(pk).get_entity(pk, COUNTER_ROW)
    except ResourceNotFoundError:
        return None


async def _until_written(pk: str, doing: str, step: Callable[[], Awaitable[Any]]) -> Any:
    """Run a read-decide-write step until it writes (or finds nothing to do): a conflicting write
    (another mover, a writer) is read again after a pause; bounded, then StoreUnavailableError."""
    for attempt in range(MOVE_ATTEMPTS):
        async with storage_call(doing):
            try:
                outcome = await step()
                if outcome is not _AGAIN:
                    return outcome
                continue
            except HttpResponseError as error:
                if error.status_code not in CONFLICT_STATUSES:
                    raise
        await retry_pause(attempt)
    raise StoreUnavailableError(f"partition {pk} stayed contended while {doing}")


async def seal(tables: PartitionTables, job_key: str, shard: int, target: int) -> None:
    """Seal a source for ``target`` partitions: from now on no task bound elsewhere is created in it."""
    pk = partition_key(job_key, shard)

    async def step() -> None:
        counter = await read_counter(tables, pk)
        marks = marks_of(counter)
        if target in marks.splits:
            return
        tasks, slots = counts_of_row(counter)
        row = counter_row(pk, tasks, slots, utc_now(), replace(marks, splits=tuple(sorted({*marks.splits, target}))))
        if counter is None:
            await tables.create(pk)
            await tables.of(pk).create_entity(row, **RESENDABLE)
        else:
            await tables.of(pk).update_entity(row, **if_match(etag_of(counter)))

    await _until_written(pk, "sealing a partition", step)


async def finish_batch(tables: PartitionTables, job_key: str, shard: int) -> None:
    """Finish the source's batch in flight, if any: copy it to its destination unless there already
    (step 2), then delete it from the source (step 3)."""
    pk = partition_key(job_key, shard)

    async def step() -> None:
        counter = await read_counter(tables, pk)
        marks = marks_of(counter)
        if not marks.move_out:
            return
        rows = await read_rows(tables.of(pk), pk, marks.move_keys)
        moving = [rows[key] for key in marks.move_keys if key in rows]
        moved_tasks, moved_slots = counts_of(status_of_row(row) for row in moving)
        await _copy_in(tables, job_key, shard, marks.move_to, marks.move_out, moving, (moved_tasks, moved_slots))
        tasks, slots = counts_of_row(counter)
        done = replace(marks, move_out=0, move_to=0, move_keys=(), move_done=marks.move_out)
        await tables.of(pk).submit_transaction(
            [
                *(("delete", {"PartitionKey": pk, "RowKey": row["RowKey"]}) for row in moving),
                (
                    "update",
                    counter_row(pk, tasks - moved_tasks, slots - moved_slots, utc_now(), done),
                    if_match(etag_of(counter)),
                ),
            ],
            **RESENDABLE,
        )

    await _until_written(pk, "finishing a move", step)


async def _copy_in(
    tables: PartitionTables, job_key: str, source: int, dest: int, batch: int, rows: list[dict], moved: tuple
) -> None:
    """Step 2: the batch's rows into the destination with their counts, once (its MoveIn says)."""
    pk = partition_key(job_key, dest)
    counter = await read_counter(tables, pk)
    marks = marks_of(counter)
    if marks.move_in >= batch and marks.move_from == source:
        return
    if counter is None:  # the destination's first rows: its table may not exist yet
        await tables.create(pk)
    tasks, slots = counts_of_row(counter)
    arrived = replace(marks, move_in=batch, move_from=source, moved_in=moved)
    counter_update = counter_row(pk, tasks + moved[0], slots + moved[1], utc_now(), arrived)
    copies = [
        {**{name: value for name, value in row.items() if name != "MovingTo"}, "PartitionKey": pk} for row in rows
    ]
    await tables.of(pk).submit_transaction(
        [
            *(("create", copy) for copy in copies),
            ("create", counter_update) if counter is None else ("update", counter_update, if_match(etag_of(counter))),
        ],
        **RESENDABLE,
    )


async def _start_batch(tables: PartitionTables, job_key: str, shard: int, dest: int, keys: list[str]) -> int:
    """Step 1: mark the rows moving and the batch in flight on the source; how many (0: none left)."""
    pk = partition_key(job_key, shard)

    async def step() -> Any:
        counter, rows = await asyncio.gather(read_counter(tables, pk), read_rows(tables.of(pk), pk, keys))
        marks = marks_of(counter)
        if marks.move_out:  # another mover's batch (or one left by a crash): finish it first
            await finish_batch(tables, job_key, shard)
            return _AGAIN
        if not rows:
            return 0
        tasks, slots = counts_of_row(counter)
        in_flight = replace(marks, move_out=marks.move_done + 1, move_to=dest, move_keys=tuple(sorted(rows)))
        await tables.of(pk).submit_transaction(
            [
                *(("update", {**row, "MovingTo": dest}, if_match(etag_of(row))) for row in rows.values()),
                ("update", counter_row(pk, tasks, slots, utc_now(), in_flight), if_match(etag_of(counter))),
            ],
            **RESENDABLE,
        )
        return len(rows)

    return await _until_written(pk, "starting a move", step)


async def move_source(tables: PartitionTables, job_key: str, shard: int, target: int) -> int:
    """Move every row of one source partition that belongs elsewhere under ``target`` partitions;
    rows moved. Sealed first, so no such row appears after the one scan of the partition."""
    await seal(tables, job_key, shard, target)
    await finish_batch(tables, job_key, shard)
    pk = partition_key(job_key, shard)
    by_dest: dict[int, list[str]] = {}
    async with storage_call("scanning a partition to move"):
        async for row in tables.of(pk).query_entities("PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"]):
            key = row["RowKey"]
            if key != COUNTER_ROW and shard_of(key, target) != shard:
                by_dest.setdefault(shard_of(key, target), []).append(key)
    moved = 0
    for dest, keys in sorted(by_dest.items()):
        for start in range(0, len(keys), BATCH_ROWS):
            batch = keys[start : start + BATCH_ROWS]
            started = await _start_batch(tables, job_key, shard, dest, batch)
            if started:
                await finish_batch(tables, job_key, shard)
                moved += started
    logger.info(
        "partition resharded", extra={"job_key": job_key, "shard": shard, "partitions": target, "rows_moved": moved}
    )
    return moved
