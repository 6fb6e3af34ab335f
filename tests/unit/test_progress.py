"""Progress arithmetic (shared.progress), pure: points, rate, ETA, stalls, failure ratios, alerts."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from shared.counting import Counts
from shared.progress import (
    MIN_RECENT_COMPLETIONS,
    Episodes,
    Point,
    Progress,
    ProgressRules,
    alerts_due,
    next_point,
    points_to_drop,
    progress_of,
    remaining,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = ProgressRules(window=timedelta(minutes=10), stall_after=timedelta(minutes=15), failure_ratio=0.2)


def counts(active=0, running=0, succeeded=0, failed=0) -> Counts:
    return Counts(active, running, succeeded + failed, succeeded, failed)


job_counts = st.builds(counts, st.integers(0, 1000), st.integers(0, 100), st.integers(0, 1000), st.integers(0, 1000))
# A job's life as observed by the timer: counts seen at growing times (seconds after T0).
lives = st.lists(st.tuples(st.integers(1, 600), job_counts), min_size=1, max_size=30)


def record(life) -> tuple[list[Point], datetime]:
    """The points the timer writes for a life; the time of the last observation."""
    points, now = [], T0
    for step, seen in life:
        now += timedelta(seconds=step)
        point = next_point(points[-1] if points else None, seen, now)
        if point is not None:
            points.append(point)
    return points, now


@given(lives)
def test_points_are_written_only_on_change_and_know_their_last_completion(life):
    points, _ = record(life)
    for before, after in pairwise(points):
        assert after.counts != before.counts and after.at > before.at
        if after.counts.completed == before.counts.completed:
            assert after.completed_since == before.completed_since
        else:
            assert after.completed_since == after.at
    assert all(point.completed_since <= point.at for point in points)


@given(lives, job_counts, st.integers(0, 3600))
def test_an_eta_is_never_before_now_and_only_while_tasks_remain(life, live, later):
    points, last = record(life)
    now = last + timedelta(seconds=later)
    progress = progress_of(points, live, now, RULES)
    if progress.eta is not None:
        assert progress.eta >= now
        assert remaining(live) > 0 and progress.completions_per_minute > 0
    if remaining(live) == 0:
        assert progress.eta is None
    assert progress.completions_per_minute is None or progress.completions_per_minute >= 0


@given(job_counts.filter(lambda c: remaining(c) > 0), st.integers(0, 10**6))
def test_a_stall_starts_exactly_at_the_threshold(live, microseconds):
    completed_at = T0
    point = Point(T0, live, completed_at)
    at_threshold = T0 + RULES.stall_after
    assert progress_of([point], live, at_threshold, RULES).stalled_since == completed_at
    just_before = at_threshold - timedelta(microseconds=microseconds + 1)
    assert progress_of([point], live, just_before, RULES).stalled_since is None


def test_no_stall_when_nothing_is_left_or_something_completed_since_the_newest_point():
    done = counts(succeeded=5)
    assert progress_of([Point(T0, done, T0)], done, T0 + timedelta(hours=5), RULES).stalled_since is None
    waiting = counts(active=3, succeeded=5)
    moved = counts(active=2, succeeded=6)
    assert progress_of([Point(T0, waiting, T0)], moved, T0 + timedelta(hours=5), RULES).stalled_since is None


def test_rate_is_net_completions_per_minute_over_the_window():
    series = [
        Point(T0, counts(active=100), T0),
        Point(T0 + timedelta(minutes=5), counts(active=80, succeeded=20), T0 + timedelta(minutes=5)),
    ]
    now = T0 + timedelta(minutes=20)  # the window is [10, 20]: the counts in force at 10 are the second point's
    live = counts(active=50, succeeded=50)
    progress = progress_of(series, live, now, RULES)
    assert progress.completions_per_minute == 3.0  # 30 completions in 10 minutes
    assert progress.eta == now + timedelta(minutes=50 / 3)


@given(st.integers(1, 50), st.integers(1, 50))
def test_a_reactivated_task_is_counted_back(done, reactivated):
    reactivated = min(reactivated, done)
    start = counts(active=100)
    series = [Point(T0, start, T0)]
    now = T0 + timedelta(minutes=5)
    finished = counts(active=100 - done, succeeded=done)
    back = counts(active=100 - done + reactivated, succeeded=done - reactivated)
    before, after = progress_of(series, finished, now, RULES), progress_of(series, back, now, RULES)
    assert remaining(back) == remaining(finished) + reactivated
    minutes = (now - T0).total_seconds() / 60
    assert after.completions_per_minute == (done - reactivated) / minutes  # net of the reactivated
    assert before.completions_per_minute == done / minutes
    if after.eta is not None:
        assert after.eta > before.eta


def test_failure_ratios_recent_and_overall_and_failing_needs_enough_completions():
    series = [Point(T0, counts(active=100, succeeded=50, failed=0), T0)]
    now = T0 + timedelta(minutes=5)
    live = counts(active=80, succeeded=62, failed=8)  # recent: 12 succeeded, 8 failed
    progress = progress_of(series, live, now, RULES)
    assert progress.recent_failure_ratio == 8 / 20 and progress.failure_ratio == 8 / 70 and progress.failing
    few = counts(active=98, succeeded=50, failed=MIN_RECENT_COMPLETIONS - 1)
    assert not progress_of(series, few, now, RULES).failing


@given(st.integers(3, 200), st.integers(1, 400))
def test_thinning_keeps_a_bounded_history_spanning_the_job(max_points, ticks):
    kept: list[datetime] = []
    for tick in range(ticks):
        kept.append(T0 + timedelta(seconds=30 * tick))
        dropped = set(points_to_drop(kept, max_points))
        assert len(dropped) <= len(kept) // 2
        kept = [moment for moment in kept if moment not in dropped]
        assert len(kept) <= max_points
    assert kept[0] == T0 and kept[-1] == T0 + timedelta(seconds=30 * (ticks - 1))


def progress(stalled_since=None, failing=False, at=T0) -> Progress:
    return Progress(at, None, None, stalled_since, None, None, failing)


@given(st.lists(st.tuples(st.sampled_from([None, 0, 1, 2]), st.booleans()), max_size=40))
def test_one_alert_per_episode(states):
    episodes, stall_alerts, failing_alerts = Episodes(), [], []
    for index, (stall, failing) in enumerate(states):
        since = None if stall is None else T0 + timedelta(hours=stall)
        episodes, due = alerts_due(episodes, progress(since, failing, T0 + timedelta(minutes=index)))
        stall_alerts += [alert.since for alert in due if alert.kind == "stalled"]
        failing_alerts += [alert.since for alert in due if alert.kind == "failing"]
    stall_runs = [s for i, (s, _) in enumerate(states) if s is not None and (i == 0 or states[i - 1][0] != s)]
    failing_runs = [i for i, (_, f) in enumerate(states) if f and (i == 0 or not states[i - 1][1])]
    assert stall_alerts == [T0 + timedelta(hours=s) for s in stall_runs]
    assert failing_alerts == [T0 + timedelta(minutes=i) for i in failing_runs]
