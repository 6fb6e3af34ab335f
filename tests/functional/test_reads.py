"""shared.store.tables.read_rows against a real Azurite: exactly the rows asked for, whether the
keys are few, adjacent (one range read) or spread thin over a large partition (range, then by key)."""
import random

import pytest

from shared.store.tables import RANGE_SLACK, create_table, read_rows, upsert_all

PK = "job-r|00"


@pytest.fixture
async def table(store):
    await create_table(store.task_rows.table)
    table = store.task_rows.table
    await upsert_all(table, [{"PartitionKey": PK, "RowKey": f"t-{n:05d}", "N": n} for n in range(0, 6000, 2)])
    return table


def expected(keys):
    return {key for key in keys if int(key[2:]) % 2 == 0 and int(key[2:]) < 6000}


@pytest.mark.parametrize("keys", [
    [f"t-{n:05d}" for n in (4, 5, 10)],  # a few: one OR-filtered query
    [f"t-{n:05d}" for n in range(1000, 1300)],  # adjacent, half absent: one range read
    [f"t-{n:05d}" for n in range(5900, 6100)],  # running past the last row
    [f"t-{n:05d}" for n in random.Random(1).sample(range(0, 7000), 40)],  # thin over 3,000 rows: range, then by key
    [f"t-{n:05d}" for n in range(0, 6000, 300)] + ["t-99999"],  # spread out, one past the end
])
async def test_exactly_the_rows_asked_for(table, keys):
    rows = await read_rows(table, PK, keys)
    assert set(rows) == expected(keys)
    assert all(row["N"] == int(key[2:]) for key, row in rows.items())


async def test_a_sparse_span_stops_scanning_and_reads_the_rest_by_key(table, monkeypatch):
    keys = [f"t-{n:05d}" for n in range(0, 6000, 200)]  # 30 keys over 3,000 rows: sparse
    scanned = []
    original = table.query_entities

    def counting(query, **kwargs):
        scanned.append(query)
        return original(query, **kwargs)

    monkeypatch.setattr(table, "query_entities", counting)
    rows = await read_rows(table, PK, keys)
    assert set(rows) == expected(keys)
    assert "RowKey ge @low" in scanned[0] and any(" or " in query for query in scanned[1:])
    assert RANGE_SLACK * len(keys) + 1000 < 3000  # the span really was too sparse to scan through
