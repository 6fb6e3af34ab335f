"""Where a job partition's task and counter rows live: each partition in a table of its own.

A table per partition (``{prefix}p{hash of the job key}{shard:02x}``) rather than one table for
every job: removing a job is one Delete Table per partition instead of reading and deleting each of
its rows (10,000 transactions for a 1,000,000-task job), and a query or insert never costs more for
the other jobs' rows -- Azurite scans and re-indexes a whole table on every query and insert, so
with one shared table a 1,000,000-task job made every page of every sweep, and every delivery of
every other job, several times slower. Rows keep their full PartitionKey (``{jobKey}|{shard:02x}``),
so a table's rows still say whose they are.

A table is created on the first write to its partition (the writer sees no counter row there);
reads of a partition whose table does not exist see no rows.
"""

from __future__ import annotations

from collections import OrderedDict

from azure.data.tables.aio import TableClient, TableServiceClient

from shared.store.tables import create_table, hashed_table_name

CLIENTS_KEPT = 4096  # table clients share the service's connections; keeping them saves rebuilding pipelines


def table_name(prefix: str, pk: str) -> str:
    """The table holding partition ``pk`` (``{jobKey}|{shard:02x}``): a valid Azure table name
    (letters and digits) for any job id."""
    job_key, shard = pk.rsplit("|", 1)
    return hashed_table_name(prefix, "p", job_key) + shard


class PartitionTables:
    """Table clients for job partitions, by partition key."""

    def __init__(self, service: TableServiceClient, prefix: str):
        self._service, self._prefix = service, prefix
        self._clients: OrderedDict[str, TableClient] = OrderedDict()  # by partition key: no hashing per call

    def of(self, pk: str) -> TableClient:
        client = self._clients.get(pk)
        if client is None:
            client = self._clients[pk] = self._service.get_table_client(table_name(self._prefix, pk))
            while len(self._clients) > CLIENTS_KEPT:
                self._clients.popitem(last=False)
        self._clients.move_to_end(pk)
        return client

    async def create(self, pk: str) -> None:
        """Make sure partition ``pk``'s table exists (one that does is left as it is)."""
        await create_table(self.of(pk))

    async def drop(self, pk: str) -> None:
        """Delete partition ``pk``'s table and every row in it (none there: nothing to do)."""
        await self.of(pk).delete_table()
