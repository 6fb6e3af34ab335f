"""shared.store.tables.read_rows against a real Azurite: exactly the rows asked for, whether the
keys are few, adjacent (one range read) or spread thin over a large partition (range, then by key)."""

import random

import pytest

from shared.store.tables import RANGE_SLACK, create_table, read_rows, upsert_all

PK = "job-r|00"


@pytest.fixture
async def table(store):
    table = store.task_rows.tables.of(PK)
    await create_table(table)
    await upsert_all(table, [{"PartitionKey": PK, "RowKey": f"t-{n:05d}", "N": n} for n in range(0, 6000, 2)])
    return table


def expected(keys):
    return {key for key in keys if int(key[2:]) % 2 == 0 and int(key[2:]) < 6000}


@pytest.mark.parametrize(
    "keys",
    [
        [f"t-{n:05d}" for n in (4, 5, 10)],  # a few, adjacent: one range read
        [f"t-{n:05d}" for n in (8, 2400, 5998)],  # a few, far apart: a short range page, then by key
        ["t-00042"],  # one: a point query
        [f"t-{n:05d}" for n in range(1000, 1300)],  # adjacent, half absent: one range read
        [f"t-{n:05d}" for n in range(5900, 6100)],  # running past the last row
        [f"t-{n:05d}" for n in random.Random(1).sample(range(0, 7000), 40)],  # thin over 3,000 rows: range, then by key
        [f"t-{n:05d}" for n in range(0, 6000, 300)] + ["t-99999"],  # spread out, one past the end
    ],
)
async def test_exactly_the_rows_asked_for(table, keys):
    rows = await read_rows(table, PK, keys)
    assert set(rows) == expected(keys)
    assert all(row["N"] == int(key[2:]) for key, row in rows.items())


@pytest.fixture
def queries_sent(table, monkeypatch):
    """The queries ``table`` is sent from here on: (filter, results_per_page) each."""
    sent = []
    original = table.query_entities

    def recording(query, **kwargs):
        sent.append((query, kwargs.get("results_per_page")))
        return original(query, **kwargs)

    monkeypatch.setattr(table, "query_entities", recording)
    return sent


async def test_a_sparse_span_stops_scanning_and_reads_the_rest_by_key(table, queries_sent):
    keys = [f"t-{n:05d}" for n in range(0, 6000, 200)]  # 30 keys over 3,000 rows: sparse
    rows = await read_rows(table, PK, keys)
    assert set(rows) == expected(keys)
    assert "RowKey ge @low" in queries_sent[0][0] and any(" or " in query for query, _ in queries_sent[1:])
    assert RANGE_SLACK * len(keys) < 3000  # the span really was too sparse to scan through


@pytest.mark.parametrize(
    "keys, queries",
    [
        ([f"t-{n:05d}" for n in range(200, 216)], 1),  # adjacent (half absent): the range alone
        ([f"t-{n:05d}" for n in (100, 3000, 5000)], 2),  # 2,450 rows apart: one short page, then by key
    ],
)
async def test_a_few_keys_are_a_range_read_unless_far_apart(table, queries_sent, keys, queries):
    assert set(await read_rows(table, PK, keys)) == expected(keys)
    assert len(queries_sent) == queries
    assert "RowKey ge @low" in queries_sent[0][0] and queries_sent[0][1] == RANGE_SLACK * len(keys)
    assert all(" or " in query or "RowKey eq @k0" in query for query, _ in queries_sent[1:])


async def test_streamed_rows_are_the_sdks_rows_with_their_etags_across_pages(table):
    """shared.store.queries.stream_rows reads what the SDK's query reads: every row of a partition over
    several pages, the selected properties and each row's ETag; a quote in a key is quoted."""
    from azure.data.tables import EdmType, EntityProperty

    from shared.store.queries import stream_rows

    odd = "job-'r|00"
    await upsert_all(
        table,
        [
            {
                "PartitionKey": odd,
                "RowKey": f"t-{n:05d}",
                "N": n,
                "Big": EntityProperty(2**40 + n, EdmType.INT64),
                "S": f"s{n}",
            }
            for n in range(1005)
        ],
    )
    for pk, select in ((PK, ["RowKey", "N"]), (odd, ["RowKey", "N", "Big", "S", "Missing"])):
        ours = [row async for row in stream_rows(table, "PartitionKey eq @pk", {"pk": pk}, select)]
        sdk = [row async for row in table.query_entities("PartitionKey eq @pk", parameters={"pk": pk}, select=select)]
        assert len(ours) == len(sdk) > 1000
        assert [row.metadata["etag"] for row in ours] == [row.metadata["etag"] for row in sdk]
        assert [row["RowKey"] for row in ours] == [row["RowKey"] for row in sdk]
        assert all(row["N"] == int(row["RowKey"][2:]) for row in ours)
    assert int(ours[7]["Big"]) == 2**40 + 7 and ours[7]["S"] == "s7"  # an Int64 comes as its decimal string


async def test_streaming_a_missing_table_raises_not_found(settings):
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables.aio import TableClient

    from shared.store.queries import stream_rows

    async with TableClient.from_connection_string(settings.storage_connection, "nosuchtable") as missing:
        with pytest.raises(ResourceNotFoundError):
            async for _ in stream_rows(missing, "PartitionKey eq @pk", {"pk": "x"}, ["RowKey"]):
                pass
