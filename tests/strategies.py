"""Hypothesis strategies shared by the unit and functional property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from shared.counting import TaskResult, TaskState, TaskStatus

BASE_TICKS = 17_000_000_000_000_000  # 2023-11-14, in 100 ns ticks since the epoch


@st.composite
def observations(draw, task_keys=("t-1", "t-2", "T-3", "t-4")):
    """One observation of one of a few tasks: any state, a delete, close timestamps (ties too)."""
    key = draw(st.sampled_from(task_keys))
    state = draw(st.one_of(st.none(), st.sampled_from(list(TaskState))))
    result = draw(st.one_of(st.none(), st.sampled_from(list(TaskResult))))
    status = TaskStatus.observed(
        ticks=BASE_TICKS + draw(st.integers(0, 20)),
        attempt=draw(st.integers(0, 2)),
        state=state,
        result=result,
        required_slots=draw(st.integers(1, 3)),
    )
    return key, status


def observe(job_id: str, task_id: str, state, ticks: int = 0, result=None, attempt: int = 0, slots: int = 1):
    """A TaskEvent as the parser would produce it (state None: a delete)."""
    from shared.events import TASK_DELETED, TASK_STATE_CHANGED, TaskEvent

    status = TaskStatus.observed(BASE_TICKS + ticks, attempt, state, result, slots)
    event_type = TASK_DELETED if state is None else TASK_STATE_CHANGED
    return TaskEvent(f"{task_id}@{ticks}", event_type, job_id, task_id, status)
