"""The store against a real Azurite: exactly-once effect, ordering, deletes, contention."""

import asyncio
import random
import threading
import zlib
from dataclasses import replace
from datetime import UTC, datetime

import aiohttp
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from shared.counting import Counts, TaskResult, TaskState, counts_of
from shared.events import Rejection
from shared.store import COUNTER_ROW, CountsStore, raw_text_of
from shared.store.codec.tasks import counts_of_row, status_of_row
from tests.conftest import make_settings
from tests.strategies import BASE_TICKS, observations, observe
from tools import faultproxy
from tools.azurite import free_port

ACTIVE, RUNNING, COMPLETED = TaskState.ACTIVE, TaskState.RUNNING, TaskState.COMPLETED
SUCCESS, FAILURE = TaskResult.SUCCESS, TaskResult.FAILURE


async def counts(store, job_key):
    return (await store.get_job_counts(job_key)).tasks


async def assert_counters_match_rows(store, job_key):
    """Every counter row equals the sum of the task rows in its partition."""
    job = (await store.get_job_counts(job_key)).job
    for shard in range(job.partitions):
        rows = [row async for row in store.partition_rows(job_key, shard)]
        counter = [row for row in rows if row["RowKey"] == COUNTER_ROW]
        tasks = [status_of_row(row) for row in rows if row["RowKey"] != COUNTER_ROW]
        assert counts_of_row(counter[0] if counter else None) == counts_of(tasks)


async def test_lifecycle_counts(store):
    outcome = await store.apply([observe("Job-A", "t1", ACTIVE, 1), observe("Job-A", "t2", ACTIVE, 1)])
    assert outcome.applied == 2
    await store.apply([observe("job-a", "t1", RUNNING, 2), observe("JOB-A", "t2", COMPLETED, 3, FAILURE, slots=2)])
    job = await store.get_job_counts("job-a")
    assert job.job.job_id == "Job-A"  # first-seen case kept for display
    assert job.tasks == Counts(running=1, completed=1, failed=1)
    assert job.slots == Counts(running=1, completed=2, failed=2)
    assert job.last_updated_at is not None


async def test_duplicates_and_older_events_change_nothing(store):
    first = [observe("j", "t1", RUNNING, 5)]
    assert (await store.apply(first)).applied == 1
    outcome = await store.apply(first + [observe("j", "t1", ACTIVE, 4)])
    assert (outcome.applied, outcome.unchanged) == (0, 2)
    assert await counts(store, "j") == Counts(running=1)


async def test_reactivation_retry_and_delete_move_counts_back(store):
    await store.apply([observe("j", "t1", COMPLETED, 1, FAILURE), observe("j", "t2", RUNNING, 1)])
    await store.apply([observe("j", "t1", ACTIVE, 2), observe("j", "t2", ACTIVE, 2, attempt=1)])
    assert await counts(store, "j") == Counts(active=2)
    await store.apply([observe("j", "t1", None, 3)])
    assert await counts(store, "j") == Counts(active=1)
    await store.apply([observe("j", "t1", RUNNING, 2)])  # older than the delete: stays deleted
    assert await counts(store, "j") == Counts(active=1)
    await store.apply([observe("j", "t1", ACTIVE, 10)])  # a task re-added under the same id
    assert await counts(store, "j") == Counts(active=2)


async def test_large_partition_spans_several_transactions(azurite):
    store = CountsStore.from_settings(make_settings(azurite, JOB_PARTITIONS=1))
    events = [observe("big", f"task-{i}", ACTIVE, 1) for i in range(250)]
    events += [observe("big", f"task-{i}", COMPLETED, 2, SUCCESS) for i in range(0, 250, 2)]
    random.Random(4).shuffle(events)
    assert (await store.apply(events)).applied == 250
    assert await counts(store, "big") == Counts(active=125, completed=125, succeeded=125)
    await assert_counters_match_rows(store, "big")
    await store.close()


async def test_unknown_job_reads_none(store):
    assert await store.get_job_counts("nope") is None


async def test_two_accounts_jobs_of_one_id_are_kept_apart(store):
    """Account teamb's "Render" and the default account's "Render": two jobs, each with its own counts."""
    ours = [observe("Render", f"t{n}", RUNNING, 1) for n in range(3)]
    theirs = [replace(observe("Render", f"t{n}", COMPLETED, 2, TaskResult.SUCCESS), account="teamb") for n in range(2)]
    await store.apply(theirs + ours + theirs)
    default, other = await store.get_job_counts("render"), await store.get_job_counts("teamb~render")
    assert (default.tasks, other.tasks) == (Counts(running=3), Counts(completed=2, succeeded=2))
    assert (default.job.account, other.job.account) == (None, "teamb")
    assert (default.job.job_id, other.job.job_id) == ("Render", "Render")
    listed, _ = await store.list_jobs(100, None)
    assert {"render", "teamb~render"} <= {job.job.job_key for job in listed}


async def test_list_jobs_pages_with_a_token(store):
    for n in range(5):
        await store.apply([observe(f"job-{n}", "t", RUNNING, 1)])
    seen, token = [], None
    while True:
        page, token = await store.list_jobs(2, token)
        assert len(page) <= 2
        seen += [(job.job.job_id, job.tasks) for job in page]
        if token is None:
            break
    assert seen == [(f"job-{n}", Counts(running=1)) for n in range(5)]


async def test_rejected_events_are_kept_idempotently_with_raw_text(store):
    now = datetime.now(UTC)
    small = Rejection(0, "e1", "state must be one of ...", '{"id":"e1"}')
    huge_raw = '{"id":"e2","data":"' + "x" * 200_000 + '"}'
    huge = Rejection(1, "e2", "unsupported event type", huge_raw)
    await store.keep_rejected([small, huge], now)
    await store.keep_rejected([small], now)  # a redelivery
    rows = sorted(await store.list_rejected(now), key=lambda row: row["EventId"])
    assert [(row["EventId"], row["Reason"]) for row in rows] == [("e1", small.reason), ("e2", huge.reason)]
    assert [raw_text_of(row) for row in rows] == [small.raw, huge_raw]
    assert rows[1]["RawChunks"] >= 1 and len(zlib.compress(huge_raw.encode())) < 64_000


_prop_jobs = iter(range(10**9))


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(observations(), min_size=1, max_size=30),
    rnd=st.randoms(use_true_random=False),
    batch_size=st.integers(1, 12),
)
def test_property_any_order_any_duplicates_same_counts_in_storage(azurite, events, rnd, batch_size):
    """Through real storage: the counts equal those of each task's newest event."""
    job = f"prop-{next(_prop_jobs)}"
    delivered = events + [rnd.choice(events) for _ in range(len(events) // 2)]
    rnd.shuffle(delivered)

    async def run():
        store = CountsStore.from_settings(make_settings(azurite, JOB_PARTITIONS=2))
        try:
            for start in range(0, len(delivered), batch_size):
                await store.apply([_as_event(job, key, s) for key, s in delivered[start : start + batch_size]])
            newest = {}
            for key, status in events:
                newest[key.lower()] = max(newest.get(key.lower(), status), status, key=lambda s: s.version)
            stored = await store.get_job_counts(job)
            assert (stored.tasks, stored.slots) == counts_of(newest.values())
            await assert_counters_match_rows(store, job)
        finally:
            await store.close()

    asyncio.run(run())


def _as_event(job, task_key, status):
    from shared.events import TASK_STATE_CHANGED, TaskEvent

    return TaskEvent("e", TASK_STATE_CHANGED, job, task_key, status)


def test_concurrent_instances_with_overlapping_batches_count_exactly(azurite):
    """Four threads, each its own event loop and store (as separate instances would be),
    deliver overlapping shuffled batches for one hot job: ETag conflicts, no double counts."""
    settings = make_settings(azurite, JOB_PARTITIONS=2)
    tasks = 120
    history = []
    for i in range(tasks):
        history += [observe("hot", f"t{i}", ACTIVE, 1), observe("hot", f"t{i}", RUNNING, 2)]
        history += [observe("hot", f"t{i}", COMPLETED, 3, SUCCESS if i % 3 else FAILURE)]
        if i % 10 == 0:
            history.append(observe("hot", f"t{i}", ACTIVE, 4))  # reactivated
    errors = []

    def deliver(seed):
        rnd = random.Random(seed)
        mine = rnd.sample(history, k=len(history) * 2 // 3) + history[seed::4]

        async def run():
            store = CountsStore.from_settings(settings)
            try:
                rnd.shuffle(mine)
                for start in range(0, len(mine), 40):
                    await store.apply(mine[start : start + 40])
            finally:
                await store.close()

        try:
            asyncio.run(run())
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    async def check():
        store = CountsStore.from_settings(settings)
        try:
            reactivated = len(range(0, tasks, 10))
            completed = tasks - reactivated
            failed = len([i for i in range(tasks) if i % 3 == 0 and i % 10 != 0])
            assert await counts(store, "hot") == Counts(
                active=reactivated, completed=completed, succeeded=completed - failed, failed=failed
            )
            await assert_counters_match_rows(store, "hot")
        finally:
            await store.close()

    asyncio.run(check())


async def test_a_listing_row_over_one_binary_property_is_kept_and_read_back_whole(store):
    """A one-partition job's page of 1,000 random 64-character ids needs two binary properties."""
    rng = random.Random(2)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    entries = [
        (
            "".join(rng.choice(alphabet) for _ in range(64)),
            observe(
                "j",
                "t",
                TaskState.COMPLETED,
                rng.randrange(10**9),
                TaskResult.FAILURE,
                rng.randrange(999_999),
                rng.randrange(1, 99_999),
            ).status,
        )
        for _ in range(1000)
    ]
    await store.record_listing("j", "0000000000000000001", "page-0", {0: entries})
    listed = await store.listed_in_shard("j", "0000000000000000001", 0)
    assert listed == {task_id.lower(): (task_id, status) for task_id, status in entries}


async def test_an_upsert_transaction_cut_after_storage_answered_is_sent_again(azurite):
    """The SDK never resends a POST whose connection was cut; a listing page and rejected events are
    upserts, so the store sends them again and the outcome is the same as one clean send."""
    port = free_port()
    proxy = await faultproxy.serve(f"http://127.0.0.1:{azurite.port}", port, before=0, after=0)
    connection = azurite.connection_string.replace(f":{azurite.port}/", f":{port}/")
    store = CountsStore.from_settings(make_settings(azurite, AzureWebJobsStorage=connection))
    try:
        await store.ensure_tables()
        listed = {
            shard: [(f"T{shard}-{n}", observe("j", f"t{shard}-{n}", RUNNING, n).status) for n in range(3)]
            for shard in range(2)
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/_faults", json={"cutBatches": 2}) as response:
                assert response.status == 200
            await store.record_listing("j", "0000000000000000001", "page-0", listed)
            async with session.get(f"http://127.0.0.1:{port}/_faults") as response:
                faults = await response.json()
        assert faults["cut_after"] == 2 and faults["cutBatches"] == 0  # both cuts spent on this page
        for shard, entries in listed.items():
            assert await store.listed_in_shard("j", "0000000000000000001", shard) == {
                task_id.lower(): (task_id, status) for task_id, status in entries
            }
    finally:
        await store.close()
        await proxy.cleanup()


async def test_deliveries_queued_on_one_partition_are_applied_together_each_told_its_own(azurite, monkeypatch):
    """Twenty concurrent deliveries to one partition in one process: fewer storage round trips
    than deliveries (they fold while the lock is held), every caller gets the changes it made."""
    from shared.store import transactions as transactions_module

    store = CountsStore.from_settings(make_settings(azurite, JOB_PARTITIONS=1))
    await store.apply([observe("busy", "warm", ACTIVE, 1)])
    transactions = 0
    submit = transactions_module.submit

    async def counting_submit(*args, **kwargs):
        nonlocal transactions
        transactions += 1
        return await submit(*args, **kwargs)

    monkeypatch.setattr(transactions_module, "submit", counting_submit)
    deliveries = [[observe("busy", f"d{d}-t{n}", ACTIVE, 1) for n in range(5)] for d in range(20)]
    deliveries[3].append(observe("busy", "d2-t0", RUNNING, 2))  # supersedes delivery 2's observation of d2-t0
    outcomes = await asyncio.gather(*(store.apply(delivery) for delivery in deliveries))
    assert 0 < transactions < len(deliveries)
    assert [outcome.applied for outcome in outcomes[:4]] == [5, 5, 4, 6]
    assert sum(outcome.applied for outcome in outcomes) == 100
    assert await counts(store, "busy") == Counts(active=100, running=1)
    await assert_counters_match_rows(store, "busy")
    await store.close()


async def test_a_sweep_corrects_from_the_rows_it_streamed_and_rereads_only_a_stale_snapshot(store, monkeypatch):
    """The sweep keeps the rows that differ from the listing and writes its corrections from them
    (no second read of the partition); a snapshot a write overtook fails its conditions and is read
    afresh, so nothing is lost or counted twice."""
    from shared.store import tasks as task_rows_module

    await store.apply([observe("Snap", f"t{n}", RUNNING, 1) for n in range(30)])
    assert (await store.get_job("snap")).partitions == 1
    listed_status = observe("Snap", "x", COMPLETED, 5, SUCCESS).status
    listed = {f"t{n}": (f"t{n}", listed_status) for n in range(10)}  # t0-t9 completed in Batch; t10-t29 gone
    reads = []
    real_read_rows = task_rows_module.read_rows

    async def counting_read_rows(*args, **kwargs):
        reads.append(args[1])
        return await real_read_rows(*args, **kwargs)

    monkeypatch.setattr(task_rows_module, "read_rows", counting_read_rows)
    result = await store.reconcile_partition("snap", 0, 1, listed, BASE_TICKS + 10, "Snap")
    assert (result["stale"], result["removed"]) == (10, 20) and reads == []
    assert await counts(store, "snap") == Counts(completed=10, succeeded=10)
    await assert_counters_match_rows(store, "snap")

    # A stale snapshot: taken, then an event lands before the sweep writes from it.
    _, _, snapshot = await store.task_rows._check_counter("snap|00", {})
    await store.apply([observe("Snap", "t0", COMPLETED, 20, FAILURE), observe("Snap", "new", ACTIVE, 20)])
    reads.clear()
    later = [observe("Snap", "t1", ACTIVE, 30, attempt=1), observe("Snap", "t0", ACTIVE, 30, attempt=1)]
    changes = await store.task_rows.apply_partition("snap", 0, 1, later, snapshot)
    assert len(changes) == 2 and reads == ["snap|00"]  # the snapshot's write failed; one fresh read
    assert await counts(store, "snap") == Counts(active=3, completed=8, succeeded=8)
    await assert_counters_match_rows(store, "snap")


async def test_a_writer_keeps_the_counter_it_wrote_and_a_stale_one_is_read_again(azurite, monkeypatch):
    """The next write to a partition skips reading its counter row (this process wrote it last); when
    another process wrote in between, the kept ETag fails and the counter is read afresh: exact counts."""
    from shared.store.resharding import mover

    settings = make_settings(azurite)
    first, second = CountsStore.from_settings(settings), CountsStore.from_settings(settings)
    counter_reads = []
    real_read_counter = mover.read_counter

    async def counting_read_counter(table, pk):
        counter_reads.append(pk)
        return await real_read_counter(table, pk)

    monkeypatch.setattr(mover, "read_counter", counting_read_counter)
    try:
        await first.apply([observe("Kept", f"t{n}", ACTIVE, 1) for n in range(5)])
        assert counter_reads == ["kept|00"]
        await first.apply([observe("Kept", f"t{n}", RUNNING, 2) for n in range(3)])
        assert counter_reads == ["kept|00"]  # the counter as written last time
        await second.apply([observe("Kept", "t9", ACTIVE, 1), observe("Kept", "t0", COMPLETED, 3, SUCCESS)])
        counter_reads.clear()
        outcome = await first.apply([observe("Kept", "t1", COMPLETED, 4, FAILURE), observe("Kept", "t5", ACTIVE, 1)])
        assert outcome.applied == 2 and counter_reads == ["kept|00"]  # kept ETag failed: read again
        assert await counts(first, "kept") == Counts(active=4, running=1, completed=2, succeeded=1, failed=1)
        await assert_counters_match_rows(first, "kept")
    finally:
        await first.close()
        await second.close()


async def test_a_writer_that_created_a_partition_writes_it_without_reading_until_another_writes(azurite, monkeypatch):
    """The writer that created a partition knows all its rows: later deliveries, new tasks and known
    ones alike, are written without a read. Once another process writes it, the first one's next
    transaction fails on the counter's ETag and it reads afresh; duplicates stay duplicates; exact counts."""
    from shared.store import tasks

    settings = make_settings(azurite)
    first, second = CountsStore.from_settings(settings), CountsStore.from_settings(settings)
    reads = []
    real_read_rows = tasks.read_rows

    async def counting_read_rows(table, pk, keys):
        reads.append(sorted(keys))
        return await real_read_rows(table, pk, keys)

    monkeypatch.setattr(tasks, "read_rows", counting_read_rows)
    try:
        await first.apply([observe("Known", f"t{n}", ACTIVE, 1) for n in range(5)])
        assert len(reads) == 1  # the partition's first write: nothing there yet, one read says so
        reads.clear()
        outcome = await first.apply(
            [observe("Known", "t0", RUNNING, 2), observe("Known", "T5", ACTIVE, 1), observe("Known", "t1", ACTIVE, 1)]
        )  # a move, a new task, a duplicate
        assert (outcome.applied, outcome.unchanged, outcome.created) == (2, 1, 1) and reads == []
        await second.apply([observe("Known", "t2", COMPLETED, 3, SUCCESS), observe("Known", "t6", ACTIVE, 1)])
        reads.clear()
        outcome = await first.apply(
            [observe("Known", "t2", RUNNING, 2), observe("Known", "t6", ACTIVE, 1), observe("Known", "t3", RUNNING, 2)]
        )
        # Kept rows said t6 was new and t2 older: the transaction failed on the counter; read again,
        # only t3 moved.
        assert (outcome.applied, outcome.unchanged) == (1, 2) and reads == [["t2", "t3", "t6"]]
        reads.clear()
        await first.apply([observe("Known", "t4", RUNNING, 2)])
        assert reads == [["t4"]]  # another process wrote here: a task not kept since is read
        assert await counts(second, "known") == Counts(active=3, running=3, completed=1, succeeded=1)
        job = await first.get_job_counts("known")
        assert job.job.partitions == 1
        assert [row["TaskId"] async for row in first.partition_rows("known", 0) if row["RowKey"] == "t5"] == ["T5"]
        await assert_counters_match_rows(first, "known")
    finally:
        await first.close()
        await second.close()


async def test_removing_a_job_drops_its_partition_tables_and_a_writer_that_knew_them_starts_afresh(
    azurite, monkeypatch
):
    """Each partition lives in a table of its own: removal deletes the job's tables (not row by row)
    and leaves other jobs alone; a process still holding the removed job's counter rows writes the
    job's next events into new tables, counted from zero."""
    from shared.store import jobs
    from shared.store.partitions import table_name

    monkeypatch.setattr(jobs, "JOB_CACHE_SECONDS", 0)  # the writer registers the job again at once

    settings = make_settings(azurite, JOB_PARTITIONS=2)
    remover, writer = CountsStore.from_settings(settings), CountsStore.from_settings(settings)
    await writer.apply(
        [observe("Gone", f"t{n}", RUNNING, 1) for n in range(40)]
        + [observe("Kept", f"t{n}", ACTIVE, 1) for n in range(10)]
    )
    names = {table_name(settings.table_prefix, f"gone|{shard:02x}") for shard in range(2)}
    assert names <= await table_names(remover)

    assert await remover.remove_job("gone") == 2
    assert not names & await table_names(remover)
    assert await remover.get_job_counts("gone") is None
    assert await counts(remover, "kept") == Counts(active=10)

    await writer.apply([observe("Gone", "t0", COMPLETED, 2, SUCCESS), observe("Gone", "t1", ACTIVE, 2)])
    assert await counts(remover, "gone") == Counts(active=1, completed=1, succeeded=1)
    await assert_counters_match_rows(remover, "gone")
    await remover.close()
    await writer.close()


async def table_names(store):
    return {table.name async for table in store._service.list_tables()}


async def test_each_scans_listing_is_a_table_dropped_whole_when_done_abandoned_or_the_job_removed(store):
    """A scan's listing lives in a table of its own, indexed by job: finishing drops that scan's,
    a new pass drops the job's scans older than its cut-off, removal drops the rest; other jobs'
    listings stay."""
    status = observe("j", "t", RUNNING, 1).status
    scans = {("j", f"{n:019d}") for n in (1, 2, 3, 4)} | {("other", f"{1:019d}")}
    await store.ensure_tables()
    for job_key, scan_id in scans:
        await store.record_listing(job_key, scan_id, "page-0", {0: [(f"T-{scan_id}", status)]})
    before = await table_names(store)

    def listed(job_key, scan_id):
        return store.listed_in_shard(job_key, scan_id, 0)

    await store.drop_scans("j", scan_id=f"{4:019d}")  # a finished pass
    await store.drop_scans("j", before=f"{3:019d}")  # abandoned scans: 1 and 2
    assert [bool(await listed("j", f"{n:019d}")) for n in (1, 2, 3, 4)] == [False, False, True, False]
    assert len(before - await table_names(store)) == 3
    await store.drop_scans("j")  # as removing the job does
    assert not await listed("j", f"{3:019d}") and await listed("other", f"{1:019d}")
    assert len(before - await table_names(store)) == 4
