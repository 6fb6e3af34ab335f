"""The reshard layout rules, pure: how many partitions, the counter marks, and when counter rows
read during a move can be trusted (shared.store.resharding.protocol)."""

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.counting import Counts
from shared.store.codec.tasks import counter_row
from shared.store.resharding.protocol import (
    MAX_PARTITIONS,
    NO_MARKS,
    CounterRead,
    Inconsistent,
    Marks,
    counted_twice,
    followed_elsewhere,
    marks_of,
    partitions_for,
    reshard_target,
    shard_of,
)

AT = datetime(2026, 12, 4, tzinfo=UTC)  # the rows' stamp: the codec takes the time as given


@given(st.integers(0, 10**8), st.integers(1, 50_000), st.sampled_from([1, 2, 3, 4, 8]))
def test_partitions_grow_by_whole_multiples_to_fit_the_rows(tasks, per_partition, current):
    count = partitions_for(tasks, per_partition, current)
    assert count % current == 0 and count >= current  # rows only ever move to new partitions
    assert count * per_partition >= tasks or count * 2 > MAX_PARTITIONS  # enough, unless at the cap
    assert count == current or (count // 2) * per_partition < tasks  # and no more than needed


@given(st.integers(0, 10**8), st.integers(1, 50_000), st.sampled_from([1, 2, 4]), st.none() | st.sampled_from([8, 16]))
def test_a_pass_grows_a_job_that_outgrew_its_partitions_and_finishes_a_reshard_left_unfinished(
    tasks, per_partition, current, unfinished
):
    target = reshard_target(tasks, per_partition, current, unfinished)
    if unfinished:  # its sources are sealed for that count: nothing else would do
        assert target == unfinished
    elif target is None:
        assert partitions_for(tasks, per_partition, current) == current
    else:
        assert target == partitions_for(tasks, per_partition, current) > current


@given(
    st.lists(st.text("abcdef0123456789", min_size=1, max_size=8), max_size=40, unique=True),
    st.data(),
    st.sampled_from([1, 2, 4]),
    st.sampled_from([2, 4]),
)
def test_a_sealed_partition_follows_only_the_tasks_it_lacks_that_belong_elsewhere(keys, data, partitions, factor):
    later = partitions * factor
    keys = [key for key in keys if shard_of(key, partitions) == 0]  # tasks of shard 0
    present = data.draw(st.sets(st.sampled_from(keys)) if keys else st.just(set()))
    elsewhere = followed_elsewhere(keys, present, 0, later)
    followed = [key for dest_keys in elsewhere.values() for key in dest_keys]
    assert len(followed) == len(set(followed))  # each followed to one place
    for key in keys:
        moved = key not in present and shard_of(key, later) != 0
        assert (key in followed) == moved
    assert all(shard_of(key, later) == dest and dest % partitions == 0 for dest, ks in elsewhere.items() for key in ks)
    assert followed_elsewhere(keys, present, 0, None) == {}  # not sealed: everything is here


def test_small_jobs_get_one_partition_and_a_million_tasks_get_sixty_four():
    assert partitions_for(40, 20_000) == 1
    assert partitions_for(200_000, 20_000) == 16
    assert partitions_for(1_000_000, 20_000) == 64


def test_marks_travel_through_a_counter_row():
    marks = Marks(
        splits=(2, 8),
        move_out=3,
        move_to=5,
        move_done=2,
        move_in=4,
        move_from=1,
        move_keys=("t1", "t9"),
        moved_in=(Counts(active=2), Counts(active=3)),
    )
    row = counter_row("j|00", Counts(running=1), Counts(running=1), AT, marks)
    assert marks_of(row) == marks
    assert marks_of(counter_row("j|00", Counts(), Counts(), AT)) == NO_MARKS
    assert marks.next_layout(1) == 2 and marks.next_layout(2) == 8 and marks.next_layout(8) is None


def read(shard, round_number, **marks):
    row = counter_row(f"j|{shard:02x}", Counts(), Counts(), AT, Marks(**marks)) if marks else None
    return CounterRead(shard, round_number, row)


def test_a_destination_whose_batches_the_source_finished_counts_once():
    reads = [read(0, 0, splits=(2,), move_done=3), read(1, 1, move_in=3, move_from=0)]
    assert counted_twice(reads) == {}


def test_a_batch_still_in_flight_on_the_source_as_read_is_counted_twice():
    reads = [read(0, 0, splits=(2,), move_out=4, move_done=3), read(1, 1, move_in=4, move_from=0)]
    assert counted_twice(reads) == {1: (0, 4)}


def test_batches_finished_between_the_reads_make_the_reader_read_again():
    reads = [read(0, 0, splits=(2,), move_done=3), read(1, 1, move_in=5, move_from=0)]
    with pytest.raises(Inconsistent):
        counted_twice(reads)


def test_a_destination_read_with_its_source_is_not_trusted_unless_in_the_settled_layout():
    mid_move = [read(0, 1, splits=(4,), move_out=2, move_done=1), read(2, 1, move_in=2, move_from=0)]
    with pytest.raises(Inconsistent):
        counted_twice(mid_move)
    settled = [read(0, 0, splits=(2,), move_done=7), read(1, 0, move_in=7, move_from=0)]
    assert counted_twice(settled) == {}


JOB_IDS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_"), min_size=1, max_size=64)


@given(JOB_IDS, st.integers(0, MAX_PARTITIONS - 1), st.text(st.sampled_from("abcXYZ019"), max_size=39))
def test_every_partition_has_a_valid_table_name_of_its_own(job_key, shard, prefix_tail):
    from shared.store.codec.tasks import partition_key
    from shared.store.partitions import table_name

    prefix = "t" + prefix_tail  # COUNTS_TABLE_PREFIX: 1-40 letters and digits, a letter first
    name = table_name(prefix, partition_key(job_key, shard))
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", name), name  # Azure's rule for table names
    assert name != table_name(prefix, partition_key(job_key, (shard + 1) % MAX_PARTITIONS))
    assert name != table_name(prefix, partition_key(job_key + "x", shard))
