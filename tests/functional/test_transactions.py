"""shared.store.transactions against a real Azurite: the hand-built $batch does what the SDK's
submit_transaction does -- the same rows and ETags, all or nothing, the same failure statuses."""

from datetime import UTC, datetime

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.store.tables import create_table, if_match
from shared.store.transactions import submit

PK = "job-x|0a"  # a key that needs percent-encoding in an entity URL


@pytest.fixture
async def table(store):
    table = store.task_rows.tables.of(PK)
    await create_table(table)
    return table


async def test_creates_and_a_conditional_replace_commit_together_with_their_etags(table):
    counter = await table.create_entity({"PartitionKey": PK, "RowKey": "!counts", "Active": 1})
    results = await submit(
        table,
        [
            (
                "create",
                {
                    "PartitionKey": PK,
                    "RowKey": "task-1",
                    "State": "running",
                    "Slots": 2,
                    "Flag": True,
                    "At": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
                },
            ),
            ("create", {"PartitionKey": PK, "RowKey": "task_2", "State": "active", "Note": 'it\'s "quoted" ü\n'}),
            ("update", {"PartitionKey": PK, "RowKey": "!counts", "Active": 3}, if_match(counter["etag"])),
        ],
    )
    stored = {row["RowKey"]: row async for row in table.query_entities("PartitionKey eq @pk", parameters={"pk": PK})}
    assert [result["etag"] for result in results] == [
        stored[key].metadata["etag"] for key in ("task-1", "task_2", "!counts")
    ]
    assert stored["task-1"]["Slots"] == 2 and stored["task-1"]["Flag"] is True
    assert stored["task-1"]["At"] == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert stored["task_2"]["Note"] == 'it\'s "quoted" ü\n' and stored["!counts"]["Active"] == 3


@pytest.mark.parametrize("failing", ["exists", "stale", "missing"])
async def test_a_failing_operation_raises_its_status_and_writes_nothing(table, failing):
    counter = await table.create_entity({"PartitionKey": PK, "RowKey": "!counts", "Active": 1})
    await table.create_entity({"PartitionKey": PK, "RowKey": "task-old", "State": "active"})
    await table.update_entity(
        {"PartitionKey": PK, "RowKey": "!counts", "Active": 2},
        mode="replace",
        etag=counter["etag"],
        match_condition=MatchConditions.IfNotModified,
    )
    bad, status = {
        "exists": (("create", {"PartitionKey": PK, "RowKey": "task-old", "State": "running"}), 409),
        "stale": (("update", {"PartitionKey": PK, "RowKey": "!counts", "Active": 9}, if_match(counter["etag"])), 412),
        "missing": (
            ("update", {"PartitionKey": PK, "RowKey": "task-none", "State": "x"}, if_match(counter["etag"])),
            404,
        ),
    }[failing]
    with pytest.raises(HttpResponseError) as raised:
        await submit(table, [("create", {"PartitionKey": PK, "RowKey": "task-new", "State": "active"}), bad])
    assert raised.value.status_code == status
    keys = {row["RowKey"] async for row in table.query_entities("PartitionKey eq @pk", parameters={"pk": PK})}
    assert keys == {"!counts", "task-old"}  # all or nothing


async def test_unknown_operations_are_refused_before_anything_is_sent(table):
    with pytest.raises(ValueError, match="merge"):
        await submit(table, [("merge", {"PartitionKey": PK, "RowKey": "r"})])


async def test_an_upsert_inserts_or_replaces_whatever_is_stored(table):
    old = await table.create_entity({"PartitionKey": PK, "RowKey": "kept", "State": "active", "Extra": 1})
    results = await submit(
        table,
        [
            ("upsert", {"PartitionKey": PK, "RowKey": "kept", "State": "running"}),
            ("upsert", {"PartitionKey": PK, "RowKey": "new", "State": "active"}),
        ],
    )
    stored = {
        row["RowKey"]: dict(row) async for row in table.query_entities("PartitionKey eq @pk", parameters={"pk": PK})
    }
    assert stored["kept"] == {"PartitionKey": PK, "RowKey": "kept", "State": "running"}  # replaced, not merged
    assert stored["new"]["State"] == "active" and results[0]["etag"] not in (None, old["etag"])


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True), texts, st.integers(-(2**31), 2**31 - 1)),
        min_size=1,
        max_size=99,
        unique_by=lambda r: r[0],
    )
)
async def test_any_values_round_trip_as_through_the_sdk(table, rows):
    partition = f"p{abs(hash(tuple(rows))) % 10**9}"
    await submit(
        table,
        [
            ("create", {"PartitionKey": partition, "RowKey": key, "Text": text, "Number": number})
            for key, text, number in rows
        ],
    )
    stored = {
        row["RowKey"]: (row["Text"], row["Number"])
        async for row in table.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
    }
    assert stored == {key: (text, number) for key, text, number in rows}
