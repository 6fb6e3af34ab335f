"""The cost rule that decides which jobs a scheduled pass validates (shared.validation.scheduling.due),
and which quiet jobs it asks Batch about (worth_asking_batch), pure."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.counting import Counts
from shared.store import JobCounts, JobRecord, SyncPosition
from shared.validation.scheduling import TASKS_PER_MINUTE_APART, due, worth_asking_batch

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


# ---- which quiet jobs a pass asks Batch about (worth_asking_batch) --------------------------------

RETENTION = timedelta(days=7)


def quiet(checked_hours_ago: float | None, validated_days_ago: float = 1) -> JobCounts:
    checked = None if checked_hours_ago is None else NOW - timedelta(hours=checked_hours_ago)
    record = JobRecord(
        "q",
        "Q",
        1,
        NOW - timedelta(days=30),
        last_validated_at=NOW - timedelta(days=validated_days_ago),
        state_checked_at=checked,
    )
    return JobCounts(record, Counts(completed=3, succeeded=3), Counts(), NOW - timedelta(days=validated_days_ago + 1))


def synced(finished: bool, hours_ago: float) -> SyncPosition:
    return SyncPosition("q", "Q", watermark_ticks=1, synced_at=NOW - timedelta(hours=hours_ago), finished=finished)


def test_a_job_never_asked_about_is_asked_once():
    assert worth_asking_batch(quiet(None), None, NOW, RETENTION)
    assert not worth_asking_batch(quiet(0.1), None, NOW, RETENTION)
    assert not worth_asking_batch(quiet(500), None, NOW, RETENTION)  # within the retention: nothing to remove


def test_a_job_the_sync_saw_finish_is_asked_once_after_and_one_it_lists_unfinished_is_not():
    assert worth_asking_batch(quiet(5), synced(True, 1), NOW, RETENTION)  # finished since last asked
    assert not worth_asking_batch(quiet(1), synced(True, 5), NOW, RETENTION)  # asked since
    assert not worth_asking_batch(quiet(5), synced(False, 1), NOW, RETENTION)


@given(st.floats(0, 24 * 30), st.floats(0, 30))
def test_past_the_retention_a_job_is_asked_about_hourly_at_most(checked_hours_ago, validated_days_ago):
    asked = worth_asking_batch(quiet(checked_hours_ago, validated_days_ago), None, NOW, RETENTION)
    assert asked == (validated_days_ago > 7 and checked_hours_ago >= 1)
