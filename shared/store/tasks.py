"""Task rows and counter rows (``{prefix}tasks``): the exactly-once write path, counts, sweeps.

A job's tasks are spread over its partitions ``{jobKey}|{shard:02x}`` (shard = crc32(taskKey) mod
partitions). Each partition holds its task rows (RowKey = task key) and one counter row (RowKey
``!counts``, sorting first) with that partition's counts. A task row and the counter row it moves
change together in one entity-group transaction under ETag conditions: the exactly-once mechanism.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from typing import Any, AsyncIterator, Sequence

from azure.core.exceptions import (
    AzureError, HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError,
)
from azure.data.tables.aio import TableClient

from shared.counting import ZERO, Change, changes_to_apply, newest_per_task
from shared.errors import StoreUnavailableError
from shared.store import reconcile
from shared.store.codec import (
    COUNTER_COLUMNS, COUNTER_ROW, TASK_COLUMNS, counter_row, counts_of_row, partition_key, shard_of, status_of_row,
    task_row,
)
from shared.store.records import Observed
from shared.store.tables import (
    MAX_FILTER_COMPARISONS, MAX_TRANSACTION_OPERATIONS, RESENDABLE, delete_rows, if_match, storage_call, unavailable,
)

logger = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 10
PARTITIONS_IN_FLIGHT = 8
# Transaction failures meaning "what was read is no longer what is stored": re-read, retry.
_CONFLICT_STATUSES = frozenset({404, 409, 412})


class TaskRows:
    def __init__(self, table: TableClient):
        self.table = table
        self._partition_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def apply(self, jobs: dict[str, tuple[int, list[Observed]]]) -> list[Change]:
        """Apply each job's observations (job key -> (its partitions, observations)) exactly once;
        the changes made. Partitions are written concurrently, a few at a time."""
        partitions: dict[str, list[Observed]] = defaultdict(list)
        for job_key, (count, observations) in jobs.items():
            for observation in observations:
                partitions[partition_key(job_key, shard_of(observation.task_id.lower(), count))].append(observation)
        in_flight = asyncio.Semaphore(PARTITIONS_IN_FLIGHT)

        async def apply_one(pk: str, items: list[Observed]) -> list[Change]:
            async with in_flight:
                return await self.apply_partition(pk, items)

        results = await asyncio.gather(*(apply_one(pk, items) for pk, items in partitions.items()))
        return [change for applied in results for change in applied]

    async def apply_partition(self, pk: str, observations: Sequence[Observed]) -> list[Change]:
        """Raises StoreUnavailableError when storage fails or stays contended; retrying the same
        observations later is always safe."""
        newest = newest_per_task((o.task_id.lower(), o.status) for o in observations)
        display_ids: dict[str, str] = {}
        for observation in observations:
            display_ids.setdefault(observation.task_id.lower(), observation.task_id)
        applied: dict[str, Change] = {}
        # One writer per partition per process: this process never conflicts with itself.
        async with self._partition_locks[pk]:
            for attempt in range(CONFLICT_ATTEMPTS):
                async with storage_call("reading task rows"):
                    rows = await self._read_rows(pk, [COUNTER_ROW, *newest])
                counter = rows.pop(COUNTER_ROW, None)
                stored = {key: status_of_row(row) for key, row in rows.items()}
                changes = changes_to_apply(stored, newest)
                try:
                    await self._commit(pk, changes, rows, counter, display_ids, applied)
                    return list(applied.values())
                except HttpResponseError as error:
                    if error.status_code not in _CONFLICT_STATUSES:
                        raise unavailable(error, "writing task rows") from error
                    logger.debug("partition changed under us; re-reading",
                                 extra={"partition": pk, "attempt": attempt})
                except AzureError as error:
                    raise unavailable(error, "writing task rows") from error
                await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** attempt)))
        raise StoreUnavailableError(f"partition {pk} stayed contended after {CONFLICT_ATTEMPTS} attempts")

    async def _commit(self, pk: str, changes: list[Change], rows: dict[str, dict], counter: dict | None,
                      display_ids: dict[str, str], applied: dict[str, Change]) -> None:
        """Write changes in transactions of <= 100 operations, each moving the counter row too."""
        tasks, slots = counts_of_row(counter)
        counter_etag = counter.metadata["etag"] if counter is not None else None
        per_transaction = MAX_TRANSACTION_OPERATIONS - 1
        for start in range(0, len(changes), per_transaction):
            chunk = changes[start:start + per_transaction]
            operations: list[tuple] = []
            for change in chunk:
                row = task_row(pk, change.task_key, change.new)
                existing = rows.get(change.task_key)
                if existing is None:
                    row["TaskId"] = display_ids[change.task_key]
                    operations.append(("create", row))
                else:
                    row["TaskId"] = existing.get("TaskId", display_ids[change.task_key])
                    operations.append(("update", row, if_match(existing.metadata["etag"])))
                tasks, slots = tasks + change.task_delta, slots + change.slot_delta
            counter_update = counter_row(pk, tasks, slots)
            operations.append(("create", counter_update) if counter_etag is None
                              else ("update", counter_update, if_match(counter_etag)))
            results = await self.table.submit_transaction(operations, **RESENDABLE)
            counter_etag = results[-1]["etag"]
            applied.update((change.task_key, change) for change in chunk)

    async def _read_rows(self, pk: str, row_keys: Sequence[str]) -> dict[str, Any]:
        """Point-read many rows of one partition with parameterised OR filters (never pasted ids)."""
        per_query = MAX_FILTER_COMPARISONS - 1  # one comparison is the PartitionKey

        async def read_chunk(keys: Sequence[str]) -> list:
            parameters = {f"k{i}": key for i, key in enumerate(keys)}
            parameters["pk"] = pk
            # Spaces around the parentheses: the SDK's @name substitution splits on whitespace.
            row_filter = " or ".join(f"RowKey eq @k{i}" for i in range(len(keys)))
            return [entity async for entity in self.table.query_entities(
                f"PartitionKey eq @pk and ( {row_filter} )", parameters=parameters)]

        key_list = list(row_keys)
        results = await asyncio.gather(*(read_chunk(key_list[i:i + per_query])
                                         for i in range(0, len(key_list), per_query)))
        return {entity["RowKey"]: entity for rows in results for entity in rows}

    # ---- counts ----------------------------------------------------------------------------

    async def counter_rows(self, job_key: str, partitions: int) -> list[dict | None]:
        """The job's counter rows, read concurrently (None for a partition with none yet)."""
        async def counter(shard: int):
            try:
                return await self.table.get_entity(partition_key(job_key, shard), COUNTER_ROW)
            except ResourceNotFoundError:
                return None

        return list(await asyncio.gather(*(counter(shard) for shard in range(partitions))))

    async def partition_rows(self, job_key: str, shard: int) -> AsyncIterator[dict]:
        """Every row of one of a job's partitions, as stored (tests check counter rows with it)."""
        async for row in self.table.query_entities("PartitionKey eq @pk",
                                                   parameters={"pk": partition_key(job_key, shard)}):
            yield row

    # ---- validation ------------------------------------------------------------------------

    async def reconcile_partition(self, job_key: str, shard: int, listed: dict, scan_started_ticks: int,
                                  job_id: str) -> dict[str, int]:
        """Correct one partition from a listing; newer stored rows (events that overtook the scan) stay.

        1. Read the partition; if the counter row disagrees with the sum of its task rows and no
           write landed while reading (the counter's ETag is unchanged), repair the counter.
        2. Apply what ``reconcile.corrections`` decides through the same ETag-guarded path as events.
        """
        pk = partition_key(job_key, shard)
        stored, counter_fixed = await self._check_counter(pk)
        observations = reconcile.corrections(job_id, listed, stored, scan_started_ticks)
        changes = await self.apply_partition(pk, observations) if observations else []
        return {"checked": len(listed), **reconcile.drift(changes),
                "countersRepaired": int(counter_fixed is True), "counterCheckDeferred": int(counter_fixed is None)}

    async def _check_counter(self, pk: str) -> tuple[dict[str, tuple[str, bool]], bool | None]:
        """Stream a partition; repair its counter row if it disagrees with the task rows.

        Returns each task row's (version, deleted) -- all a sweep needs to compare with a listing;
        rows are not kept, so memory stays small for large partitions -- and True (repaired),
        False (it was right) or None (writes kept landing while reading, so there was no
        consistent snapshot: the check is deferred to a later pass).
        """
        versions: dict[str, tuple[str, bool]] = {}
        for _ in range(3):
            async with storage_call("checking a counter row"):
                counter, versions, tasks, slots = None, {}, ZERO, ZERO
                async for row in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": pk},
                                                           select=TASK_COLUMNS + COUNTER_COLUMNS):
                    if row["RowKey"] == COUNTER_ROW:
                        counter = row
                        continue
                    status = status_of_row(row)
                    tasks, slots = tasks + status.task_counts(), slots + status.slot_counts()
                    versions[row["RowKey"]] = (status.version, status.deleted)
                if counts_of_row(counter) == (tasks, slots):
                    return versions, False
                # The counter row sorts first, so it was read before every task row, and every
                # write to a partition moves it: if its ETag still holds, the rows read are one
                # consistent snapshot and the conditional write below proves it.
                try:
                    async with self._partition_locks[pk]:
                        row = counter_row(pk, tasks, slots)
                        if counter is None:
                            await self.table.create_entity(row, **RESENDABLE)
                        else:
                            await self.table.update_entity(row, **if_match(counter.metadata["etag"]))
                    logger.warning("counter row repaired", extra={
                        "partition": pk, "was": str(counts_of_row(counter)[0]), "now": str(tasks)})
                    return versions, True
                except (ResourceModifiedError, ResourceExistsError):
                    continue
        return versions, None

    async def delete_job_rows(self, job_key: str, partitions: int) -> int:
        """Delete every task and counter row of a job; rows removed."""
        removed = 0
        for shard in range(partitions):
            rows = [row async for row in self.table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": partition_key(job_key, shard)},
                select=["PartitionKey", "RowKey"])]
            await delete_rows(self.table, rows)
            removed += len(rows)
        return removed
