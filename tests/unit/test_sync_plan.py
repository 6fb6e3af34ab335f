"""Which jobs a sync run reaches (shared.sync.plan): the budget goes where tasks move."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.store import SyncPosition
from shared.sync import ACTIVE_SECONDS, IDLE_SYNC_SECONDS, plan

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_moving_jobs_every_run_quiet_ones_when_their_time_comes():
    positions = {
        "moving": SyncPosition("moving", "Moving", 1, synced_at=ago(5), changed_at=ago(5)),
        "quiet": SyncPosition("quiet", "Quiet", 1, synced_at=ago(5), changed_at=ago(ACTIVE_SECONDS + 1)),
        "quiet-due": SyncPosition("quiet-due", "Quiet-Due", 1, synced_at=ago(IDLE_SYNC_SECONDS), changed_at=None),
        "half-listed": SyncPosition("half-listed", "Half-Listed", 1, next_link="http://x/next", synced_at=ago(1)),
        "done": SyncPosition("done", "Done", 1, synced_at=ago(999), finished=True),
    }
    unfinished = {
        "Moving": "active",
        "Quiet": "active",
        "Quiet-Due": "active",
        "Half-Listed": "active",
        "New": "active",
    }
    jobs, waiting = plan(unfinished, positions, 10, NOW)
    assert [job.job_key for job in jobs] == ["new", "quiet-due", "moving", "half-listed"] and waiting == 0
    capped, waiting = plan(unfinished, positions, 2, NOW)
    assert [job.job_key for job in capped] == ["new", "quiet-due"] and waiting == 2


@given(
    st.lists(
        st.tuples(st.floats(0, 120), st.one_of(st.none(), st.floats(0, 600)), st.booleans()), min_size=1, max_size=30
    ),
    st.integers(1, 40),
)
def test_a_quiet_job_waits_no_longer_than_idle_and_the_longest_unsynced_go_first(specs, max_jobs):
    positions = {
        f"j{n}": SyncPosition(
            f"j{n}",
            f"J{n}",
            1,
            synced_at=ago(synced),
            finished=finished,
            changed_at=None if changed is None else ago(changed),
        )
        for n, (synced, changed, finished) in enumerate(specs)
    }
    jobs, waiting = plan({}, positions, max_jobs, NOW)
    due = [
        p
        for p in positions.values()
        if not p.finished
        and (
            (NOW - p.synced_at).total_seconds() >= IDLE_SYNC_SECONDS
            or (p.changed_at is not None and (NOW - p.changed_at).total_seconds() < ACTIVE_SECONDS)
        )
    ]
    assert len(jobs) == min(len(due), max_jobs) and waiting == len(due) - len(jobs)
    assert {job.job_key for job in jobs} <= {p.job_key for p in due}
    reached = [job.synced_at for job in jobs]
    assert reached == sorted(reached)  # the longest unsynced first
    if jobs and waiting:
        assert max(reached) <= min(p.synced_at for p in due if p.job_key not in {j.job_key for j in jobs})
