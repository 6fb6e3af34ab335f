"""Resharding against a real Azurite: a job's rows move to more partitions while deliveries and
reads keep coming, and every read and the end state stay exact."""

import asyncio
import random
from dataclasses import replace

from shared.counting import Counts, TaskState, counts_of
from shared.errors import StoreUnavailableError
from shared.store import COUNTER_ROW, CountsStore, shard_of
from shared.store.codec.tasks import counts_of_row, status_of_row
from shared.store.resharding import mover
from shared.store.resharding.protocol import marks_of
from tests.conftest import make_settings
from tests.strategies import observe

ACTIVE, RUNNING, COMPLETED = TaskState.ACTIVE, TaskState.RUNNING, TaskState.COMPLETED


async def partitions_hold_their_own_rows(store: CountsStore, job_key: str, partitions: int) -> dict:
    """Every row is in the shard its key maps to, none in flight, every counter equals its rows; the
    newest status of every task."""
    found = {}
    for shard in range(partitions):
        rows = [row async for row in store.partition_rows(job_key, shard)]
        counter = next((row for row in rows if row["RowKey"] == COUNTER_ROW), None)
        tasks = [row for row in rows if row["RowKey"] != COUNTER_ROW]
        assert all(shard_of(row["RowKey"], partitions) == shard and "MovingTo" not in row for row in tasks)
        assert counts_of_row(counter) == counts_of(status_of_row(row) for row in tasks)
        found.update((row["RowKey"], status_of_row(row)) for row in tasks)
    return found


async def test_a_reshard_under_concurrent_deliveries_and_reads_stays_exact(azurite):
    """Three instances (own stores, own caches) deliver new tasks and state changes while a fourth
    moves the job from 1 to 8 partitions; readers check every count they get against what had been
    created before and after their read."""
    settings = make_settings(azurite, JOB_PARTITIONS=1)
    stores = [CountsStore.from_settings(settings) for _ in range(5)]
    moving_store, readers, writers = stores[0], stores[1], stores[2:]
    job = "growing"
    await moving_store.apply([observe(job, f"t{n:05d}", ACTIVE, 1) for n in range(600)])
    generated = applied = 600  # tasks created so far; of them, those whose delivery was applied
    history = {f"t{n:05d}": [observe(job, f"t{n:05d}", ACTIVE, 1)] for n in range(600)}
    moving = True
    reads, redeliveries = [], []

    async def deliver(store: CountsStore, seed: int):
        nonlocal generated, applied
        rnd = random.Random(seed)
        while moving:
            batch, new = [], 0
            for _ in range(rnd.randint(1, 40)):
                if rnd.random() < 0.3:  # a new task: the total only grows
                    key, state, step = f"t{generated:05d}", ACTIVE, 1
                    generated, new = generated + 1, new + 1
                else:
                    key = rnd.choice(sorted(history))
                    state, step = rnd.choice([ACTIVE, RUNNING, COMPLETED]), len(history[key]) + 1
                event = observe(job, key, state, step)
                history.setdefault(key, []).append(event)
                batch.append(event)
            while True:
                try:
                    await store.apply(batch)
                    break
                except StoreUnavailableError:  # a 503: Event Grid delivers the batch again
                    redeliveries.append(seed)
            applied += new

    async def read():
        while moving:
            before = applied
            counts = (await readers.get_job_counts(job)).tasks
            reads.append(counts)
            total = counts.active + counts.running + counts.completed
            assert before <= total <= generated, (before, total, generated)
            assert min(counts.as_dict().values()) >= 0

    async def reads_reach(count: int) -> None:
        """Hold the move until the readers have read this often: reads land in each phase of it,
        however fast the machine moves rows."""
        for _ in range(6000):
            if len(reads) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the readers read {len(reads)} times in 60 s")

    async def move():
        nonlocal moving
        try:
            await moving_store.begin_reshard(job, 8)
            await reads_reach(len(reads) + 5)
            moved = await moving_store.reshard_partition(job, 0, 8)
            await reads_reach(len(reads) + 6)
            await moving_store.finish_reshard(job, 8)
            return moved
        finally:
            moving = False

    results = await asyncio.gather(move(), *(deliver(store, seed) for seed, store in enumerate(writers)), read())
    assert results[0] > 450  # 7/8 of the rows moved
    assert len(reads) > 10 and len(redeliveries) < 5, (len(reads), redeliveries)
    newest = {
        key: max((event.status for event in events), key=lambda status: status.version)
        for key, events in history.items()
    }
    stored = await partitions_hold_their_own_rows(moving_store, job, 8)
    assert stored == newest
    final = await stores[1].get_job_counts(job)
    assert (final.tasks, final.slots) == counts_of(newest.values())
    assert (await moving_store.get_job(job)).partitions == 8
    for store in stores:
        await store.close()


async def test_a_move_stopped_mid_batch_is_finished_by_a_writer_then_resumed(azurite):
    """The mover stops after marking a batch in flight (step 1): a delivery for one of its tasks
    finishes the move itself, counts stay exact throughout, and the next mover completes the rest."""
    store = CountsStore.from_settings(make_settings(azurite, JOB_PARTITIONS=1))
    job = "stopped"
    await store.apply([observe(job, f"t{n}", ACTIVE, 1) for n in range(300)])
    away = sorted(key for key in (f"t{n}" for n in range(300)) if shard_of(key, 2) == 1)
    await mover.seal(store.task_rows.tables, job, 0, 2)
    assert await mover._start_batch(store.task_rows.tables, job, 0, 1, away[:50]) == 50  # then "crashes"
    assert (await store.get_job_counts(job)).tasks == Counts(active=300)

    await store.apply([observe(job, away[0], RUNNING, 2)])  # waits on the row in flight, then finishes the move
    source = await mover.read_counter(store.task_rows.tables, f"{job}|00")
    assert marks_of(source).move_done == 1 and not marks_of(source).move_out
    assert (await store.get_job_counts(job)).tasks == Counts(active=299, running=1)

    await store.begin_reshard(job, 2)
    assert await store.reshard_partition(job, 0, 2) == len(away) - 50
    await store.finish_reshard(job, 2)
    stored = await partitions_hold_their_own_rows(store, job, 2)
    assert len(stored) == 300 and stored[away[0]].state is RUNNING
    assert (await store.get_job_counts(job)).tasks == Counts(active=299, running=1)
    await store.close()


async def test_a_new_job_is_sized_by_batchs_own_count(azurite):
    sizes = {"small": 40, "large": 70_000, "unknown": None}
    asked = []

    async def job_size(account, job_id):
        asked.append((account, job_id))
        if job_id == "flaky":
            raise ConnectionError("Batch unreachable")
        return sizes[job_id] if account is None else 45_000

    store = CountsStore.from_settings(make_settings(azurite, JOB_PARTITIONS=2, JOB_PARTITION_ROWS=20000), job_size)
    for job in ("small", "large", "unknown", "flaky"):
        await store.apply([observe(job, "t1", ACTIVE, 1)])
        await store.apply([observe(job, "t2", ACTIVE, 1)])
    await store.apply([replace(observe("small", "t1", ACTIVE, 1), account="teamb")])  # another account's "small"
    partitions = {job: (await store.get_job(job)).partitions for job in ("small", "large", "unknown", "flaky")}
    # at least JOB_PARTITIONS, doubled until 20,000 rows each; the default where Batch cannot tell
    assert partitions == {"small": 2, "large": 4, "unknown": 2, "flaky": 2}
    assert (await store.get_job("teamb~small")).partitions == 4  # sized by its own account's Batch
    # once per job, on first sight, of the job's own account
    default_account = [(None, job) for job in ("flaky", "large", "small", "unknown")]
    assert sorted(asked, key=lambda pair: (pair[0] or "", pair[1])) == [*default_account, ("teamb", "small")]
    await store.close()


async def test_concurrent_deliveries_of_a_new_job_share_one_registration(azurite):
    """Deliveries in flight together for a job not seen yet ask Batch once and write its index row once."""
    asked, arrived, all_arrived = [], [], asyncio.Event()

    async def job_size(account, job_id):
        asked.append(job_id)
        await all_arrived.wait()  # Batch answers only once every delivery has asked for the job's partitions
        return 50_000

    store = CountsStore.from_settings(make_settings(azurite, JOB_PARTITION_ROWS=20000), job_size)
    partitions_for = store.job_index.partitions_for

    async def arriving(job_key, job_id):
        arrived.append(job_key)
        if len(arrived) == 8:
            all_arrived.set()
        return await partitions_for(job_key, job_id)

    store.job_index.partitions_for = arriving
    await asyncio.wait_for(
        asyncio.gather(*(store.apply([observe("Burst", f"t{n}", ACTIVE, 1)]) for n in range(8))), timeout=60
    )
    assert arrived == ["burst"] * 8
    assert asked == ["Burst"] and (await store.get_job("burst")).partitions == 4
    assert (await store.get_job_counts("burst")).tasks == Counts(active=8)
    await store.close()
