"""Job summaries (rows: ``shared.store.codec.summaries``): the jobs list's pages and totals, each one
or a few queries whatever the number of jobs.

One writer keeps them (the ``SummarizeJobs`` timer: Functions runs a timer on one instance at a
time; this process's runs take turns): a job's ``ids`` row and its account's totals change in one
ETag-guarded transaction, then its list rows move. The ``ids`` row names every list row that may
exist, before any is written, so a run cut short anywhere leaves nothing the next run cannot find.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.accounts import account_of_job_key, job_key_of
from shared.errors import InvalidContinuationError, StoreUnavailableError
from shared.store import transactions
from shared.store.codec.summaries import (
    ACTIVE,
    ALERT,
    ALL,
    FINISHED,
    HOURS_PARTITION,
    IDS_PREFIX,
    TOTALS_ROW,
    Brief,
    ListPosition,
    StoredJob,
    Summary,
    account_family,
    account_partition_name,
    adjusted,
    brief_of,
    hour_of_partition,
    hours_row,
    ids_partition,
    job_row,
    list_partition,
    list_row,
    stored_job_of,
    totals_of,
    totals_row,
)
from shared.store.queries import first_rows, stream_rows
from shared.store.tables import (
    MAX_TRANSACTION_OPERATIONS,
    RESENDABLE,
    create_table,
    hashed_table_name,
    read_rows,
    storage_call,
    upsert_all,
)

HOURS_CACHE_SECONDS = 5.0  # how long a reader trusts its list of a family's hours
QUERIES_PER_PAGE = 8  # hours one page reads at most; a page cut there is shorter, with a next link
LISTED_FIELDS = ["PartitionKey", "RowKey", "JobKey", "JobId", "Account", "Body", "Version"]
STATE_PARTITION, BACKFILL_ROW = "state", "backfill"
ANY_ETAG = {"etag": "*"}  # a list row is deleted whatever it holds


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list page holds."""

    accounts: tuple[str | None, ...]  # the accounts listed, as job keys name them (None: the default one)
    every_account: bool  # no account asked for (jobs of accounts no longer configured included)
    state: str | None = None  # "active" (tasks left) or "finished"
    alert: str | None = None  # "any", "stalled" or "failing"
    prefix: str | None = None  # job ids starting with this (case-insensitive): listed by id


@dataclass(frozen=True)
class ListedJob:
    job_id: str
    account: str | None  # as job keys name it
    body: dict[str, Any]
    version: str


class JobSummaries:
    def __init__(self, service: TableServiceClient, prefix: str, clock: Callable[[], float] = time.monotonic):
        self.table = service.get_table_client(f"{prefix}summaries")
        self.hours_table = service.get_table_client(f"{prefix}summaryhours")
        self._service, self._prefix = service, prefix
        self._list_tables: dict[str, TableClient] = {}  # bucket -> its table's client
        self._clock = clock
        self._turn = asyncio.Lock()  # one run at a time in this process
        self._hours_known: set[str] = set()  # buckets whose table and hours row this process made
        self._cleared: dict[str, frozenset[tuple[str, str]]] = {}  # job key -> stale list rows deleted
        self._hours: dict[str, tuple[float, list[int]]] = {}  # family -> (read at, its hours newest first)

    # ---- writing (one run at a time) -----------------------------------------------------

    async def write(self, summaries: Sequence[Summary], removed: Iterable[str]) -> None:
        """Put these jobs' summaries in place and take the removed jobs' out, totals adjusted.

        Raises StoreUnavailableError when storage fails or another run wrote the same rows first;
        writing the same summaries again is always safe."""
        async with self._turn, storage_call("writing job summaries"):
            by_account: dict[str | None, tuple[list[Summary], list[str]]] = defaultdict(lambda: ([], []))
            for summary in summaries:
                by_account[summary.account][0].append(summary)
            for job_key in removed:
                by_account[account_of_job_key(job_key)][1].append(job_key)
            moves: list[tuple[Summary, StoredJob | None]] = []
            for account, (written, removed_keys) in by_account.items():
                stored, totals_current = await self._stored(
                    account, [summary.job_key for summary in written] + removed_keys
                )
                # A removed job's list rows go first: its ids row is what finds them.
                await self._delete_list_rows(
                    [
                        key
                        for job_key in removed_keys
                        if job_key in stored
                        for key in self._maybe_left(job_key, stored[job_key])
                    ]
                )
                await self._commit(account, written, removed_keys, stored, totals_current)
                for job_key in removed_keys:
                    self._cleared.pop(job_key, None)
                moves += [(summary, stored.get(summary.job_key)) for summary in written]
            await self._move_list_rows(moves)

    async def _stored(self, account: str | None, job_keys: list[str]) -> tuple[dict[str, StoredJob], Any]:
        """These jobs' ``ids`` rows and the account's totals row (None before its first), in one read."""
        rows = await read_rows(self.table, ids_partition(account), [*job_keys, TOTALS_ROW])
        totals = rows.pop(TOTALS_ROW, None)
        return {key: stored_job_of(row, row.metadata["etag"]) for key, row in rows.items()}, totals

    async def _commit(
        self,
        account: str | None,
        written: list[Summary],
        removed: list[str],
        stored: dict[str, StoredJob],
        totals_current: Any,
    ) -> None:
        """The jobs' ``ids`` rows and the account's totals, in transactions of up to 99 jobs and the totals."""
        totals = totals_of(totals_current)
        totals_etag = totals_current.metadata["etag"] if totals_current is not None else None
        operations: list[tuple[tuple, dict[str, int] | None, dict[str, int] | None]] = []
        for summary in written:
            old = stored.get(summary.job_key)
            row = job_row(summary, self._maybe_left(summary.job_key, old), json.dumps(summary.body))
            operation = ("create", row) if old is None else ("update", row, _unchanged_since(old.etag))
            operations.append((operation, old.contribution if old else None, summary.contribution()))
        for job_key in removed:
            old = stored.get(job_key)
            if old is not None:
                keys = {"PartitionKey": ids_partition(account), "RowKey": job_key}
                operations.append((("delete", keys, {"etag": old.etag}), old.contribution, None))
        chunk_size = MAX_TRANSACTION_OPERATIONS - 1
        for start in range(0, len(operations), chunk_size):
            chunk = operations[start : start + chunk_size]
            for _, old_share, new_share in chunk:
                totals = adjusted(totals, old_share, new_share)
            row = totals_row(account, totals)
            totals_operation = (
                ("create", row) if totals_etag is None else ("update", row, _unchanged_since(totals_etag))
            )
            try:
                results = await transactions.submit(
                    self.table, [operation for operation, _, _ in chunk] + [totals_operation]
                )
            except HttpResponseError as failure:  # TableTransactionError: a row changed under this run
                raise StoreUnavailableError(
                    f"job summaries of account {account_partition_name(account)!r} changed under this run: {failure}"
                ) from failure
            totals_etag = results[-1]["etag"]

    def _maybe_left(self, job_key: str, old: StoredJob | None) -> list[tuple[str, str]]:
        """The list rows of a job that may exist besides the ones it gets now."""
        if old is None:
            return []
        return sorted(set(old.keys) | (set(old.stale) - self._cleared.get(job_key, frozenset())))

    async def _totals_row(self, account: str | None) -> Any:
        try:
            return await self.table.get_entity(ids_partition(account), TOTALS_ROW)
        except ResourceNotFoundError:
            return None

    async def _move_list_rows(self, moves: list[tuple[Summary, StoredJob | None]]) -> None:
        """Upsert each job's list rows, note their hours, then delete the rows it had elsewhere."""
        by_partition: dict[str, list[dict]] = defaultdict(list)
        for summary, _ in moves:
            body = json.dumps(summary.body)
            for partition, _ in summary.list_keys():
                by_partition[partition].append(list_row(summary, partition, body))
        new_hours = [partition for partition in by_partition if partition not in self._hours_known]
        for partition in new_hours:
            await create_table(self._list_table(partition))
        if new_hours:
            await upsert_all(self.hours_table, [hours_row(partition) for partition in new_hours])
            self._hours_known.update(new_hours)
            self._hours.clear()  # this process's lists show the new buckets at once
        await asyncio.gather(
            *(self._upsert_bucket(partition, rows) for partition, rows in by_partition.items())
        )  # a table each: storage takes them side by side
        leftovers: list[tuple[str, str]] = []
        for summary, old in moves:
            left = sorted(set(self._maybe_left(summary.job_key, old)) - set(summary.list_keys()))
            leftovers += left
        await self._delete_list_rows(leftovers, keep=set(by_partition))
        for summary, old in moves:
            self._cleared[summary.job_key] = frozenset(self._maybe_left(summary.job_key, old)) - set(
                summary.list_keys()
            )

    async def _upsert_bucket(self, partition: str, rows: list[dict]) -> None:
        try:
            await upsert_all(self._list_table(partition), rows)
        except HttpResponseError as failure:
            if failure.status_code == 404:  # its table deleted since (Azure: still being deleted)
                self._hours_known.discard(partition)  # the next run creates it again
            raise

    async def _delete_list_rows(self, keys: list[tuple[str, str]], keep: Collection[str] = ()) -> None:
        """Delete list rows (those already gone are fine); a bucket left empty loses its table and its
        hours row unless it is in ``keep`` (written this run)."""
        by_partition: dict[str, list[str]] = defaultdict(list)
        for partition, row_key in keys:
            by_partition[partition].append(row_key)
        for partition, row_keys in by_partition.items():
            table = self._list_table(partition)
            for start in range(0, len(row_keys), MAX_TRANSACTION_OPERATIONS):
                chunk = row_keys[start : start + MAX_TRANSACTION_OPERATIONS]
                try:
                    await transactions.submit(
                        table,
                        [("delete", {"PartitionKey": partition, "RowKey": row_key}, ANY_ETAG) for row_key in chunk],
                    )
                except HttpResponseError as failure:
                    if failure.status_code != 404:
                        raise
                    # Some rows gone already, or the whole bucket: one by one.
                    await asyncio.gather(*(_delete_one(table, partition, row_key) for row_key in chunk))
            if partition not in keep and not await _first_rows_of(table, partition, "", [], {}, 1):
                await _delete_one(self.hours_table, HOURS_PARTITION, partition)
                self._hours_known.discard(partition)
                try:
                    await table.delete_table()
                except ResourceNotFoundError:
                    pass

    def _list_table(self, partition: str) -> TableClient:
        table = self._list_tables.get(partition)
        if table is None:
            name = hashed_table_name(self._prefix, "d", partition)
            table = self._list_tables[partition] = self._service.get_table_client(name)
        return table

    # ---- the backfill's position (a deployment's first runs summarize every job once) ------

    async def backfill_position(self) -> tuple[bool, str]:
        """Whether the backfill is done, and the last job key it summarized."""
        async with storage_call("reading the summaries' backfill"):
            try:
                row = await self.table.get_entity(STATE_PARTITION, BACKFILL_ROW)
            except ResourceNotFoundError:
                return False, ""
        return bool(row["Done"]), row["After"]

    async def move_backfill(self, done: bool, after: str) -> None:
        row = {"PartitionKey": STATE_PARTITION, "RowKey": BACKFILL_ROW, "Done": done, "After": after}
        async with storage_call("recording the summaries' backfill"):
            await self.table.upsert_entity(row, mode="replace", **RESENDABLE)

    # ---- reading -----------------------------------------------------------------------------

    async def page(
        self, job_filter: JobFilter, size: int, position: ListPosition | None
    ) -> tuple[list[ListedJob], ListPosition | None]:
        """A page of the list and where the next one starts (None: no more). By last change, newest
        first; with a prefix, by job id."""
        if position is not None and (position.hour is None) != (job_filter.prefix is not None):
            raise InvalidContinuationError("a continuation token of another kind of list")
        async with storage_call("listing jobs"):
            if job_filter.prefix is not None:
                return await self._page_by_id(job_filter, size, position)
            return await self._page_by_change(job_filter, size, position)

    async def _page_by_change(
        self, job_filter: JobFilter, size: int, position: ListPosition | None
    ) -> tuple[list[ListedJob], ListPosition | None]:
        family, conditions, parameters = _family_for(job_filter)
        hours = [hour for hour in await self._hours_of(family) if position is None or hour <= (position.hour or 0)]
        rows: list[Any] = []
        for queried, hour in enumerate(hours):
            if queried == QUERIES_PER_PAGE:
                return _listed(rows), ListPosition(hour=hour)
            after = position.row_key if position is not None and hour == position.hour else ""
            partition = list_partition(family, hour)
            rows += await _first_rows_of(
                self._list_table(partition), partition, after, conditions, parameters, size - len(rows)
            )
            if len(rows) == size:
                return _listed(rows), ListPosition(hour=hour, row_key=rows[-1]["RowKey"])
        return _listed(rows), None

    async def _hours_of(self, family: str) -> list[int]:
        """The hours holding the family's list rows, newest first, as read at most HOURS_CACHE_SECONDS
        ago (a job moved into an hour that held none of the family's rows may show that much later)."""
        cached = self._hours.get(family)
        if cached is None or self._clock() - cached[0] > HOURS_CACHE_SECONDS:
            rows = await first_rows(
                self.hours_table,
                "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high",
                {"pk": HOURS_PARTITION, "low": f"{family}|", "high": f"{family}|~"},
                ["RowKey"],
                100_000,
            )
            cached = self._hours[family] = (self._clock(), [hour_of_partition(row["RowKey"]) for row in rows])
        return sorted(cached[1], reverse=True)

    async def _page_by_id(
        self, job_filter: JobFilter, size: int, position: ListPosition | None
    ) -> tuple[list[ListedJob], ListPosition | None]:
        prefix = job_filter.prefix or ""
        conditions, parameters = _conditions(job_filter, state=True, alert=True, account=False)

        async def one(account: str | None) -> list[Any]:
            low, comparison = job_key_of(account, prefix), "ge"
            if position is not None:
                after = job_key_of(account, position.job_id)
                if after >= low:  # strictly after for the accounts at or before the position's
                    low, comparison = after, ("gt" if account_partition_name(account) <= position.account else "ge")
            query = [f"PartitionKey eq @pk and RowKey {comparison} @low and RowKey lt @high", *conditions]
            return await first_rows(
                self.table,
                " and ".join(query),
                {"pk": ids_partition(account), "low": low, "high": job_key_of(account, prefix) + "~", **parameters},
                LISTED_FIELDS,
                size,
            )

        accounts = sorted(job_filter.accounts, key=account_partition_name)
        found = await asyncio.gather(*(one(account) for account in accounts))
        merged = sorted(
            (row for rows in found for row in rows), key=lambda row: (_id_of(row["JobKey"]), row["Account"])
        )
        page = merged[:size]
        more = len(merged) > size or any(len(rows) == size for rows in found)
        if not page or not more:
            return _listed(page), None
        return _listed(page), ListPosition(job_id=_id_of(page[-1]["JobKey"]), account=page[-1]["Account"])

    async def briefs(self) -> dict[str, Brief]:
        """Every summarized job's tasks and last change, by job key (a query per 1,000 jobs)."""
        async with storage_call("reading job summaries"):
            return {
                row["RowKey"]: brief_of(row)
                async for row in stream_rows(
                    self.table,
                    "PartitionKey ge @low and PartitionKey lt @high",
                    {"low": IDS_PREFIX, "high": f"{IDS_PREFIX}~"},
                    ["RowKey", "Contribution", "LastChange"],
                )
                if row["RowKey"] != TOTALS_ROW and row.get("LastChange")
            }

    async def totals(self, accounts: Iterable[str | None]) -> dict[str | None, dict[str, int]]:
        """Each account's totals (one point read per account)."""
        listed = list(accounts)
        async with storage_call("reading totals"):
            rows = await asyncio.gather(*(self._totals_row(account) for account in listed))
        return {account: totals_of(row) for account, row in zip(listed, rows, strict=True)}


async def _first_rows_of(
    table: TableClient, partition: str, after: str, conditions: list[str], parameters: dict[str, Any], top: int
) -> list[Any]:
    """The first ``top`` list rows of a bucket after row key ``after`` that meet ``conditions`` (a
    bucket whose table is gone has none)."""
    try:
        return await first_rows(
            table,
            " and ".join(["PartitionKey eq @pk and RowKey gt @after", *conditions]),
            {"pk": partition, "after": after, **parameters},
            LISTED_FIELDS,
            top,
        )
    except ResourceNotFoundError:
        return []


async def _delete_one(table: TableClient, partition: str, row_key: str) -> None:
    try:
        await table.delete_entity(partition, row_key)
    except ResourceNotFoundError:
        pass


def _unchanged_since(etag: str | None) -> dict[str, Any]:
    return {"etag": etag}


def _id_of(job_key: str) -> str:
    return job_key.rpartition("~")[2]


def _listed(rows: list[Any]) -> list[ListedJob]:
    return [
        ListedJob(
            row["JobId"],
            None if row["Account"] == account_partition_name(None) else row["Account"],
            json.loads(row["Body"]),
            row["Version"],
        )
        for row in rows
    ]


def _family_for(job_filter: JobFilter) -> tuple[str, list[str], dict[str, Any]]:
    """The family a filter reads (the narrowest it names) and the conditions left for its rows."""
    if job_filter.alert is not None:  # the alert family holds stalled and failing jobs alone
        conditions, parameters = _conditions(job_filter, state=True, alert=job_filter.alert != "any", account=True)
        return ALERT, conditions, parameters
    if job_filter.state is not None:
        conditions, parameters = _conditions(job_filter, state=False, alert=False, account=True)
        return (ACTIVE if job_filter.state == "active" else FINISHED), conditions, parameters
    if not job_filter.every_account:
        return account_family(job_filter.accounts[0]), [], {}
    return ALL, [], {}


def _conditions(job_filter: JobFilter, state: bool, alert: bool, account: bool) -> tuple[list[str], dict[str, Any]]:
    conditions: list[str] = []
    parameters: dict[str, Any] = {}
    if state and job_filter.state is not None:
        conditions.append(f"Active eq {'true' if job_filter.state == 'active' else 'false'}")
    if alert and job_filter.alert in ("stalled", "failing"):
        conditions.append(f"{job_filter.alert.capitalize()} eq true")
    elif alert and job_filter.alert == "any":
        conditions.append("( Stalled eq true or Failing eq true )")
    if account and not job_filter.every_account:
        conditions.append("Account eq @account")
        parameters["account"] = account_partition_name(job_filter.accounts[0])
    return conditions, parameters
