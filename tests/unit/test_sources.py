"""The three event sources agree: any interleaving, with duplicates, of a job's webhook events,
its service-log records and List Tasks listings taken at any moments folds, by the counting
rules, to the counts of each task's newest state."""

import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.counting import Counts, newest_per_task
from shared.eventgrid import parse_event
from shared.events import task_status
from shared.servicelog import parse_record
from tools.batchsim.model import BatchAccount

NOW = datetime.now(UTC)
JOB = "Sources"


def history(seed: int, tasks: int, rounds: int, deletes: bool):
    """A job's life in the simulator: (webhook observations, log observations, listings, truth)."""
    changes = iter(range(10**9))
    account = BatchAccount(clock=lambda: 1_750_000_000 + next(changes) / 1000, keep_service_log=True)  # 1 ms apart
    account.create_job(JOB)
    account.add_tasks(JOB, [f"t{n}" for n in range(tasks)])
    rng = random.Random(seed)
    listings = []
    for _ in range(rounds):
        account.step(JOB, rng, tasks, deletes=deletes)
        listings.append([task.to_json("") for task in account.job(JOB).tasks.values()])  # a sync's view
    account.finish(JOB, rng)
    account.step(JOB, rng, tasks // 2, deletes=deletes)  # reactivations (and deletions) after the finish
    listings.append([task.to_json("") for task in account.job(JOB).tasks.values()])
    webhook = [parse_event(event.to_event_grid(), NOW) for event in account.take_outbox()]
    log = [parse_record(record, NOW) for event in account.take_log_outbox() for record in event.to_service_log()]
    listed = [[(task["id"].lower(), task_status(task, NOW)[1]) for task in listing] for listing in listings]
    return (
        [(e.task_key, e.status) for e in webhook],
        [(e.task_key, e.status) for e in log if e is not None],
        listed,
        account.task_counts(JOB)["taskCounts"],
    )


def fold(observations) -> dict:
    return Counts.total(status.task_counts() for status in newest_per_task(observations).values()).as_dict()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    tasks=st.integers(1, 30),
    rounds=st.integers(1, 4),
    order=st.randoms(),
    duplicates=st.floats(0, 0.5),
)
def test_webhook_log_and_listings_in_any_order_converge(seed, tasks, rounds, order, duplicates):
    webhook, log, listed, truth = history(seed, tasks, rounds, deletes=True)
    everything = webhook + log + [item for listing in listed for item in listing]
    everything += [item for item in everything if order.random() < duplicates]
    order.shuffle(everything)
    assert fold(everything) == truth


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    tasks=st.integers(1, 30),
    rounds=st.integers(1, 4),
    order=st.randoms(),
    lost=st.floats(0, 0.5),
)
def test_the_log_with_losses_plus_the_latest_listing_converge_without_any_producer(seed, tasks, rounds, order, lost):
    """What a real account gives: the service log (some records lost) and the delta sync."""
    _, log, listed, truth = history(seed, tasks, rounds, deletes=False)
    kept = [item for item in log if order.random() >= lost]
    everything = kept + listed[-1]  # the sync's latest listing of what changed
    order.shuffle(everything)
    assert fold(everything) == truth


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    tasks=st.integers(1, 30),
    rounds=st.integers(2, 6),
    order=st.randoms(),
    lost=st.floats(0, 0.5),
    overlap_ms=st.integers(0, 5),
)
def test_two_delta_syncs_listing_at_any_moments_and_a_lossy_log_converge(seed, tasks, rounds, order, lost, overlap_ms):
    """The account's sync and the watched sync each list what changed since their own watermark (less
    the overlap) whenever they run; with the log (records lost), in any order, duplicated across the
    two, the counts are the truth once either has listed after the last change."""
    changes = iter(range(10**9))
    clock = lambda: 1_750_000_000 + next(changes) / 1000  # noqa: E731 -- each change 1 ms after the last
    account = BatchAccount(clock=clock, keep_service_log=True)
    account.create_job(JOB)
    account.add_tasks(JOB, [f"t{n}" for n in range(tasks)])
    rng = random.Random(seed)
    watermarks = {"account": None, "watched": None}
    listed = []

    def delta_listing(syncer: str) -> None:
        since = watermarks[syncer]
        started = account.now_ticks()
        listed.extend(
            (task.id.lower(), task_status(task.to_json(""), NOW)[1])
            for task in account.job(JOB).tasks.values()
            if since is None or task.state_ticks >= since - overlap_ms * 10_000
        )
        watermarks[syncer] = started

    for _ in range(rounds):
        account.step(JOB, rng, tasks, deletes=False)
        for syncer in watermarks:
            if order.random() < 0.5:
                delta_listing(syncer)
    delta_listing(order.choice(sorted(watermarks)))  # one of them runs after the last change
    log = [parse_record(record, NOW) for event in account.take_log_outbox() for record in event.to_service_log()]
    kept = [(e.task_key, e.status) for e in log if e is not None and order.random() >= lost]
    everything = kept + listed
    order.shuffle(everything)
    assert fold(everything) == account.task_counts(JOB)["taskCounts"]
