"""Progress history's and rejected events' rows, pure (shared.store.codec.history, .rejected)."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.counting import Counts
from shared.progress import Episodes, Point
from shared.store.codec.history import (
    HEAD_ROW,
    POINT_PREFIX,
    POINTS_END,
    head_of_row,
    head_row,
    point_of_row,
    point_row,
)
from shared.store.codec.rejected import raw_text_of, rejected_row

moments = st.datetimes(datetime(2000, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    lambda moment: moment.replace(microsecond=moment.microsecond // 10 * 10)  # Table Storage keeps 100-ns ticks
)
tallies = st.integers(0, 10**9)


@given(moments, tallies, tallies, tallies, tallies, st.integers(0, 10**6))
def test_a_point_reads_back_as_written(at, active, running, succeeded, failed, seconds_before):
    counts = Counts(active, running, succeeded + failed, succeeded, failed)
    point = Point(at, counts, at - timedelta(seconds=seconds_before))
    assert point_of_row(point_row("render-42", point)) == point


@given(st.lists(moments, min_size=2, max_size=10, unique=True))
def test_newer_points_sort_first_after_the_head_and_before_the_end(times):
    keys = [point_row("job", Point(at, Counts(0, 0, 0, 0, 0), at))["RowKey"] for at in sorted(times)]
    assert keys == sorted(keys, reverse=True)
    assert all(HEAD_ROW < key < POINTS_END and key.startswith(POINT_PREFIX) for key in keys)


@given(st.none() | moments, st.none() | moments, st.integers(0, 10**6))
def test_a_head_reads_back_as_written(stall, failing, held):
    episodes = Episodes(stall, failing)
    assert head_of_row(head_row("job", episodes, held)) == (episodes, held)


def test_the_same_raw_event_on_the_same_day_is_one_row_and_reads_back_whole():
    noon = datetime(2026, 12, 4, 12, tzinfo=UTC)
    huge = "x" * 200_000  # kept compressed
    first = rejected_row(huge, None, "too big", noon)
    again = rejected_row(huge, "e1", "too big", noon + timedelta(hours=1))
    assert (first["PartitionKey"], first["RowKey"]) == (again["PartitionKey"], again["RowKey"])
    assert raw_text_of(first) == huge and "Raw" not in first
    assert rejected_row(huge, None, "too big", noon + timedelta(days=1))["PartitionKey"] != first["PartitionKey"]
    assert rejected_row("{}", None, "not an array", noon)["RowKey"] != first["RowKey"]
