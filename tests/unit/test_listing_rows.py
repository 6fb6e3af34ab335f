"""A validation listing row's codec (shared.store.codec.listings): what a page showed of one partition, kept
compressed over as many binary properties as it needs."""

import base64
import random
import string

from hypothesis import given
from hypothesis import strategies as st

from shared.counting import MAX_ATTEMPT, MAX_REQUIRED_SLOTS, TaskResult, TaskState, TaskStatus
from shared.store.codec.binary import BINARY_PROPERTY_BYTES
from shared.store.codec.listings import (
    LISTING_PARTS,
    listed_of_row,
    listing_entries,
    listing_properties,
    listing_row,
    shard_query,
)

ID_CHARACTERS = string.ascii_letters + string.digits + "_-"


def round_trip(entries):
    properties = listing_properties(entries)
    assert list(properties) == list(LISTING_PARTS[: len(properties)])  # in order, from the first
    assert all(len(part) <= BINARY_PROPERTY_BYTES for part in properties.values())
    return listing_entries(properties.values()), properties


statuses = st.builds(
    TaskStatus.observed,
    st.integers(10**16, 10**18),
    st.integers(0, MAX_ATTEMPT),
    st.none() | st.sampled_from(list(TaskState)),
    st.none() | st.sampled_from(list(TaskResult)),
    st.integers(1, MAX_REQUIRED_SLOTS),
)


@given(st.lists(st.tuples(st.text(ID_CHARACTERS, min_size=1, max_size=64), statuses), max_size=50))
def test_any_listed_tasks_come_back_as_they_were_kept(entries):
    assert round_trip(entries)[0] == entries


def test_a_page_of_the_longest_random_ids_spans_two_properties_and_comes_back_whole():
    """1,000 random 64-character ids with random versions: more than one binary property holds."""
    rng = random.Random(1)
    entries = [
        (
            "".join(rng.choice(ID_CHARACTERS) for _ in range(64)),
            TaskStatus.observed(
                rng.randrange(10**16, 10**18),
                rng.randrange(MAX_ATTEMPT),
                TaskState.COMPLETED,
                TaskResult.FAILURE,
                rng.randrange(1, MAX_REQUIRED_SLOTS),
            ),
        )
        for _ in range(1000)
    ]
    listed, properties = round_trip(entries)
    assert len(properties) == 2 and listed == entries


def test_a_page_of_ordinary_ids_is_one_small_property():
    entries = [
        (f"Task-{n:06d}", TaskStatus.observed(10**17 + n * 9_999, 0, TaskState.RUNNING, None, 1)) for n in range(1000)
    ]
    listed, properties = round_trip(entries)
    assert list(properties) == ["Listed"] and len(properties["Listed"]) < 10_000 and listed == entries


@given(st.lists(st.tuples(st.text(ID_CHARACTERS, min_size=1, max_size=64), statuses), max_size=20))
def test_a_listing_row_read_back_as_the_table_hands_binary_properties_gives_its_tasks(entries):
    """Table Storage hands Edm.Binary back as base64 text; the row's key ranges are one shard's."""
    row = listing_row("render-42", "0001", 3, "0000000000000000007-000002", entries)
    read_back = {name: base64.b64encode(v).decode() if isinstance(v, bytes) else v for name, v in row.items()}
    assert listed_of_row(read_back) == entries
    _, own = shard_query("render-42", "0001", 3)
    _, next_shard = shard_query("render-42", "0001", 4)
    assert own["pk"] == row["PartitionKey"] and own["low"] <= row["RowKey"] < own["high"]
    assert not next_shard["low"] <= row["RowKey"] < next_shard["high"]
