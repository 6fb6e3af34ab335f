from hypothesis import given
from hypothesis import strategies as st

from shared.counting import (
    ZERO,
    Counts,
    TaskResult,
    TaskState,
    TaskStatus,
    changes_to_apply,
    counts_of,
    newest_per_task,
)
from tests.strategies import BASE_TICKS, observations


def status(state, result=None, ticks=0, attempt=0, slots=1):
    return TaskStatus.observed(BASE_TICKS + ticks, attempt, state, result, slots)


def test_buckets_follow_batch_rules():
    assert status(TaskState.ACTIVE).task_counts() == Counts(active=1)
    assert status(TaskState.PREPARING).task_counts() == Counts(running=1)
    assert status(TaskState.RUNNING).task_counts() == Counts(running=1)
    assert status(TaskState.COMPLETED, TaskResult.SUCCESS).task_counts() == Counts(completed=1, succeeded=1)
    assert status(TaskState.COMPLETED, TaskResult.FAILURE).task_counts() == Counts(completed=1, failed=1)
    assert status(None).task_counts() == ZERO


def test_slot_counts_scale_by_required_slots():
    assert status(TaskState.RUNNING, slots=4).slot_counts() == Counts(running=4)


def test_result_is_cleared_outside_completed():
    reactivated = status(TaskState.ACTIVE, TaskResult.FAILURE)
    assert reactivated.result is None
    assert reactivated.task_counts() == Counts(active=1)


def test_version_orders_by_time_then_attempt_then_lifecycle():
    assert status(TaskState.ACTIVE, ticks=2).version > status(TaskState.COMPLETED, TaskResult.SUCCESS, ticks=1).version
    assert status(TaskState.ACTIVE, attempt=1).version > status(TaskState.RUNNING, attempt=0).version
    assert status(TaskState.RUNNING).version > status(TaskState.PREPARING).version
    assert status(None).version > status(TaskState.COMPLETED, TaskResult.FAILURE).version


def test_older_or_equal_changes_nothing():
    stored = {"a": status(TaskState.RUNNING, ticks=5)}
    assert changes_to_apply(stored, {"a": status(TaskState.ACTIVE, ticks=4)}) == []
    assert changes_to_apply(stored, {"a": status(TaskState.RUNNING, ticks=5)}) == []


def test_reactivation_moves_failed_back_to_active():
    failed = status(TaskState.COMPLETED, TaskResult.FAILURE, ticks=1)
    [change] = changes_to_apply({"a": failed}, {"a": status(TaskState.ACTIVE, ticks=2)})
    assert change.task_delta == Counts(active=1, completed=-1, failed=-1)


def test_delete_removes_from_counts():
    [change] = changes_to_apply({"a": status(TaskState.RUNNING, slots=2)}, {"a": status(None, ticks=1)})
    assert change.task_delta == Counts(running=-1)
    assert change.slot_delta == Counts(running=-2)


def _apply_in_batches(batches):
    """The store's algorithm without storage: per batch, fold to newest, apply what is newer."""
    rows, tasks, slots = {}, ZERO, ZERO
    for batch in batches:
        for change in changes_to_apply(rows, newest_per_task(batch)):
            rows[change.task_key] = change.new
            tasks, slots = tasks + change.task_delta, slots + change.slot_delta
    return rows, tasks, slots


@given(st.lists(observations(), max_size=40), st.randoms(use_true_random=False), st.integers(1, 8))
def test_any_order_any_duplicates_same_counts(events, rnd, batch_size):
    delivered = events + [rnd.choice(events) for _ in range(len(events) // 3)] if events else []
    rnd.shuffle(delivered)
    batches = [delivered[i : i + batch_size] for i in range(0, len(delivered), batch_size)]

    rows, tasks, slots = _apply_in_batches(batches)

    newest = {}
    for key, observed in events:  # the oracle: each task's newest event, by max()
        newest[key] = max(newest.get(key, observed), observed, key=lambda s: s.version)
    assert rows == newest
    assert (tasks, slots) == counts_of(newest.values())
    assert min(tasks.as_dict().values(), default=0) >= 0
