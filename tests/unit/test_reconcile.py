"""The sweep's decision (shared.store.reconcile), pure: what a listing corrects in stored rows."""

from hypothesis import given
from hypothesis import strategies as st

from shared.counting import TaskState, TaskStatus, changes_to_apply, newest_per_task
from shared.store.reconcile import corrections, drift
from tests.strategies import BASE_TICKS

SCAN_STARTED = BASE_TICKS + 10
KEYS = [f"t{n}" for n in range(8)]


@st.composite
def statuses(draw, latest_ticks):
    state = draw(st.one_of(st.none(), st.sampled_from(list(TaskState))))
    return TaskStatus.observed(BASE_TICKS + draw(st.integers(0, latest_ticks)), draw(st.integers(0, 1)), state, None, 1)


# Listed tasks were seen before the scan started; stored rows may be newer (events overtaking it).
listings = st.dictionaries(st.sampled_from(KEYS), statuses(9).filter(lambda status: not status.deleted))
stored_rows = st.dictionaries(st.sampled_from(KEYS), statuses(20))


def decide(stored: dict, listed: dict) -> list:
    return corrections(
        "job",
        {key: (key.upper(), status) for key, status in listed.items()},
        {key: (status.version, status.deleted) for key, status in stored.items()},
        SCAN_STARTED,
    )


def after(stored: dict, listed: dict) -> dict:
    """The rows once the corrections went through the write path's own rule."""
    found = decide(stored, listed)
    final = dict(stored)
    for change in changes_to_apply(stored, newest_per_task((o.task_id.lower(), o.status) for o in found)):
        final[change.task_key] = change.new
    return final


@given(stored_rows, listings)
def test_every_listed_task_ends_at_least_as_new_as_listed(stored, listed):
    final = after(stored, listed)
    for key, status in listed.items():
        assert final[key].version >= status.version
        if key not in stored or stored[key].version <= status.version:
            assert final[key] == status


@given(stored_rows, listings)
def test_an_unlisted_task_is_removed_only_if_its_row_predates_the_scan(stored, listed):
    final = after(stored, listed)
    for key, status in stored.items():
        if key in listed:
            continue
        newer_than_scan = status.version >= TaskStatus.observed(SCAN_STARTED, 0, None, None, 1).version
        if status.deleted or newer_than_scan:
            assert final[key] == status  # an event for a task added after the scan began stays
        else:
            assert final[key].deleted


@given(stored_rows, listings)
def test_only_what_changes_a_row_goes_to_the_write_path(stored, listed):
    for found in decide(stored, listed):
        key = found.task_id.lower()
        assert key not in stored or found.status.version > stored[key].version


@given(stored_rows, listings)
def test_a_second_sweep_over_the_same_listing_corrects_nothing(stored, listed):
    once = after(stored, listed)
    assert after(once, listed) == once


def test_drift_names_each_kind_of_change():
    active = TaskStatus.observed(BASE_TICKS, 0, TaskState.ACTIVE, None, 1)
    running = TaskStatus.observed(BASE_TICKS + 1, 0, TaskState.RUNNING, None, 1)
    gone = TaskStatus.observed(BASE_TICKS + 2, 0, None, None, 1)
    changes = changes_to_apply({"b": active, "c": active}, {"a": active, "b": running, "c": gone})
    assert drift(changes) == {"missing": 1, "stale": 1, "removed": 1}
