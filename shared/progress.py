"""Progress, pure: the points of a job's history, its rate and ETA, stalls, failure ratios, alerts.

A *point* is a job's counts at one moment, written by the progress timer when the counts differ
from the job's newest point (so at most one per timer period). Each point carries when the
number of completed tasks last changed, so a stall is read off the newest point alone.

Everything here is arithmetic over points, counts and a given ``now``: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.config import Settings
from shared.counting import Counts

# Below this many tasks completed in the window, a recent failure ratio is too noisy to alert on.
MIN_RECENT_COMPLETIONS = 10


@dataclass(frozen=True)
class Point:
    at: datetime
    counts: Counts
    completed_since: datetime  # when counts.completed last changed, at or before ``at``


@dataclass(frozen=True)
class ProgressRules:
    window: timedelta  # the recent window for the rate and the recent failure ratio
    stall_after: timedelta  # tasks waiting or running, nothing completed for this long: stalled
    failure_ratio: float  # recent failed / recent completed at or above this: failing (0..1)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProgressRules:
        return cls(
            window=timedelta(minutes=settings.progress_window_minutes),
            stall_after=timedelta(minutes=settings.stall_minutes),
            failure_ratio=settings.failure_alert_percent / 100,
        )


@dataclass(frozen=True)
class Progress:
    as_of: datetime
    completions_per_minute: float | None  # net completions over the window; None without history
    eta: datetime | None  # when the remaining active + running tasks complete at that rate
    stalled_since: datetime | None  # the last completion of a stalled job
    recent_failure_ratio: float | None  # failed / completed among the window's completions
    failure_ratio: float | None  # failed / completed over the job's life
    failing: bool  # recent failure ratio at or above the rule, over enough completions

    def as_dict(self) -> dict:
        return {
            "asOf": iso(self.as_of),
            "completionsPerMinute": None
            if self.completions_per_minute is None
            else round(self.completions_per_minute, 3),
            "eta": iso(self.eta),
            "stalledSince": iso(self.stalled_since),
            "recentFailureRatio": _ratio(self.recent_failure_ratio),
            "failureRatio": _ratio(self.failure_ratio),
            "failing": self.failing,
        }


def remaining(counts: Counts) -> int:
    """Tasks not yet completed: waiting (active) or running. A reactivated task is counted back here."""
    return counts.active + counts.running


def next_point(newest: Point | None, counts: Counts, now: datetime) -> Point | None:
    """The point to record for ``counts`` seen at ``now``; None when they equal the newest point's."""
    if newest is None:
        return Point(now, counts, now)
    if counts == newest.counts:
        return None
    completed_since = newest.completed_since if counts.completed == newest.counts.completed else now
    return Point(now, counts, completed_since)


def progress_of(series: Sequence[Point], counts: Counts, now: datetime, rules: ProgressRules) -> Progress:
    """A job's progress from its recent points (oldest first, the newest point at or before the
    window's start included when there is one) and its live counts.

    The rate is net completions per minute since the window's start (or since the first point of a
    younger job): a reactivated task takes one completion back, and the rate never goes below 0.
    """
    overall = _ratio_of(counts.failed, counts.completed)
    if not series:
        return Progress(now, None, None, None, None, overall, False)
    start = now - rules.window
    baseline = _value_at(series, start) or series[0]
    elapsed = (now - max(baseline.at, start)).total_seconds() / 60
    completed = counts.completed - baseline.counts.completed
    rate = max(0, completed) / elapsed if elapsed > 0 else None
    left = remaining(counts)
    eta = now + timedelta(minutes=left / rate) if rate and left else None
    recent_failed = counts.failed - baseline.counts.failed
    recent_ratio = _ratio_of(recent_failed, completed) if completed > 0 and recent_failed >= 0 else None
    failing = recent_ratio is not None and completed >= MIN_RECENT_COMPLETIONS and recent_ratio >= rules.failure_ratio
    return Progress(
        now, rate, eta, stalled_since(series[-1], counts, now, rules.stall_after), recent_ratio, overall, failing
    )


def stalled_since(newest: Point, counts: Counts, now: datetime, stall_after: timedelta) -> datetime | None:
    """The last completion of a job with tasks left, when it is at least ``stall_after`` ago."""
    if remaining(counts) == 0 or counts.completed != newest.counts.completed:
        return None  # nothing left to wait for, or something completed since the newest point
    return newest.completed_since if now - newest.completed_since >= stall_after else None


def _value_at(series: Sequence[Point], moment: datetime) -> Point | None:
    """The newest point at or before ``moment`` (the counts in force then)."""
    before = [point for point in series if point.at <= moment]
    return before[-1] if before else None


def points_to_drop(times: Sequence[datetime], max_points: int) -> list[datetime]:
    """Which points to remove when a job holds more than ``max_points`` (oldest first): every
    other point of the older half, so old history gets coarser but still spans the job's life.
    The first and the newest points are always kept."""
    if len(times) <= max_points:
        return []
    older = times[1 : len(times) // 2 + 1]
    return list(older[::2])


# ---- alert episodes ------------------------------------------------------------------------

ALERT_KINDS = ("stalled", "failing")


@dataclass(frozen=True)
class Episodes:
    """What has been alerted for a job: a stall (by its start) and a failing spell (by its start)."""

    stall_logged: datetime | None = None
    failing_since: datetime | None = None


@dataclass(frozen=True)
class Alert:
    kind: str  # one of ALERT_KINDS
    since: datetime


def alerts_due(episodes: Episodes, progress: Progress) -> tuple[Episodes, list[Alert]]:
    """The alerts to raise now and the episodes after them: one alert per episode, a new episode
    once the last one ended (completions resumed, the failure ratio fell back)."""
    due: list[Alert] = []
    stall = progress.stalled_since
    if stall is not None and stall != episodes.stall_logged:
        due.append(Alert("stalled", stall))
    failing_since = episodes.failing_since
    if progress.failing and failing_since is None:
        failing_since = progress.as_of
        due.append(Alert("failing", failing_since))
    elif not progress.failing:
        failing_since = None
    return replace(episodes, stall_logged=stall, failing_since=failing_since), due


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _ratio_of(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
