"""The cost rule that decides which jobs a scheduled pass validates (shared.validation.scheduling.due), pure."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.counting import Counts
from shared.store import JobCounts, JobRecord
from shared.validation.scheduling import TASKS_PER_MINUTE_APART, due

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def job(tasks: int, validated_minutes_ago: float | None, changed_minutes_ago: float | None) -> JobCounts:
    validated = None if validated_minutes_ago is None else NOW - timedelta(minutes=validated_minutes_ago)
    changed = None if changed_minutes_ago is None else NOW - timedelta(minutes=changed_minutes_ago)
    record = JobRecord("j", "J", 1, NOW - timedelta(days=1), last_validated_at=validated)
    return JobCounts(record, Counts(completed=tasks, succeeded=tasks), Counts(), changed)


def test_a_job_never_validated_is_due_whatever_its_size():
    assert due(job(5_000_000, None, 1), NOW)


def test_an_unchanged_job_is_not_due():
    assert not due(job(10, 60, 61), NOW)


def test_a_small_changed_job_is_due_on_the_next_tick():
    assert due(job(500, 0.5, 0.1), NOW)


def test_large_jobs_wait_one_minute_per_ten_thousand_tasks():
    assert not due(job(200_000, 19, 1), NOW) and due(job(200_000, 20, 1), NOW)
    assert not due(job(1_000_000, 99, 1), NOW) and due(job(1_000_000, 100, 1), NOW)


@given(st.integers(0, 10**7), st.integers(0, 10_000), st.integers(0, 10_000))
def test_a_changed_job_is_due_exactly_when_its_last_pass_is_old_enough(tasks, validated_ago, changed_ago):
    changed_since = changed_ago < validated_ago
    old_enough = validated_ago >= tasks / TASKS_PER_MINUTE_APART
    assert due(job(tasks, validated_ago, changed_ago), NOW) == (changed_since and old_enough)
