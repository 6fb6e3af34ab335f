"""The validation workflow through real replays of the library's own orchestrator handler.

Activities are stand-ins that record their inputs (the real ones are tested against the Batch
simulator and Azurite in tests/functional/test_validation.py)."""

import asyncio
import copy
import random
from itertools import pairwise

import azure.durable_functions as df
from hypothesis import given, settings
from hypothesis import strategies as st

import ValidateCountsCleanup
import ValidateJobListing
import ValidateJobOrchestrator
from shared.validation import workflow
from shared.validation.payloads import SLICES_PER_LISTING, ListingLimits, Slice
from tools.durable import COMPLETION_EVENTS, ORCHESTRATOR_STARTED, DurableEngine, Instance, NonDeterminismError

PAGE_SIZE = 10  # a stand-in page (Batch's holds 1,000): the scan says how large a page is
PARALLEL = 3
PARTITIONS = 3
SPREAD_TASKS = [tick * 7 for tick in range(95)]  # creation ticks of a job's tasks, spread out
CREATED, SCAN_STARTED = 0, 1000


class Recorder:
    """Stand-in activities for one job whose tasks were created at ``tasks`` (creation ticks), listed
    PAGE_SIZE at a time, and PARTITIONS partitions. Records what each page listed."""

    def __init__(
        self,
        tasks=SPREAD_TASKS,
        fail_page: int | None = None,
        gone_after: int | None = None,
        known_span=None,
        reshard_to: int | None = None,
    ):
        self.tasks = sorted(tasks)
        self.reshard_to = reshard_to
        self.known_span = known_span
        self.calls: list[tuple] = []
        self.listed: list[int] = []
        self.paged: list[tuple] = []  # per call that listed: (its next link, pages listed, tasks listed)
        self.fail_page, self.gone_after = fail_page, gone_after

    async def begin(self, job):
        self.calls.append(("begin", job["jobId"], job.get("reshardedTo")))
        if self.reshard_to and job.get("reshardedTo") != self.reshard_to:
            return {**job, "action": "reshard", "partitions": PARTITIONS, "target": self.reshard_to}
        return {
            **job,
            "action": "validate",
            "scanId": "s1",
            "scanStartedTicks": SCAN_STARTED,
            "createdTicks": CREATED,
            "partitions": self.reshard_to or PARTITIONS,
            "expectedTasks": len(self.tasks),
            "pageSize": PAGE_SIZE,
            "parallelListings": PARALLEL,
            "knownSpan": self.known_span,
        }

    async def page(self, scan):
        """Up to maxPages pages of the slice, as the real activity lists them."""
        piece = scan["slice"]
        calls_before = sum(call[0] == "page" for call in self.calls)
        self.calls.append(("page", piece["low"], piece["high"], piece["next"], scan["maySplit"]))
        await asyncio.sleep(random.random() / 200)  # finish out of order
        if calls_before == self.fail_page:
            raise RuntimeError("Batch failed listing tasks")
        if self.gone_after is not None and calls_before >= self.gone_after:
            return {"gone": True}
        in_slice = [tick for tick in self.tasks if piece["low"] <= tick < piece["high"]]
        start = offset = int(piece["next"] or 0)
        if (
            piece["next"] is None
            and len(in_slice) > PAGE_SIZE
            and scan["maySplit"]
            and piece["high"] - piece["low"] >= 2
        ):
            return {"split": True}
        pages = 0
        while pages < scan["maxPages"] and (pages == 0 or offset < len(in_slice)):
            offset, pages = offset + PAGE_SIZE, pages + 1
        listed = in_slice[start:offset]
        self.listed += listed
        self.paged.append((piece["next"], pages, len(listed)))
        return {
            "next": str(offset) if offset < len(in_slice) else None,
            "pages": pages,
            "listed": len(listed),
            "invalid": 0,
            "created": [min(listed), max(listed)] if listed else None,
        }

    async def reshard(self, move):
        self.calls.append(("reshard", move["shard"], move["target"]))
        await asyncio.sleep(random.random() / 100)
        return {"shard": move["shard"], "moved": 5}

    async def sweep(self, scan):
        self.calls.append(("sweep", scan["shard"]))
        await asyncio.sleep(random.random() / 100)  # finish out of order
        return {
            "checked": 10,
            "missing": scan["shard"],
            "stale": 0,
            "removed": 0,
            "countersRepaired": 0,
            "counterCheckDeferred": 0,
        }

    async def finish(self, scan):
        self.calls.append(("finish", scan["tasksListed"], sorted(s["missing"] for s in scan["sweeps"])))
        self.created_span = scan["createdSpan"]
        return {"jobId": scan["jobId"], "action": "validated", "tasksListed": scan["tasksListed"]}

    async def remove(self, job):
        self.calls.append(("remove", job["jobId"]))
        return {"jobId": job["jobId"], "action": "removed"}

    def engine(self) -> DurableEngine:
        self.last_engine = DurableEngine(
            {
                workflow.REMOVE_JOBS: ("orchestrationTrigger", ValidateCountsCleanup.main),
                workflow.VALIDATE_JOB: ("orchestrationTrigger", ValidateJobOrchestrator.main),
                workflow.LIST_SLICES: ("orchestrationTrigger", ValidateJobListing.main),
                workflow.REMOVE_JOB: ("activityTrigger", self.remove),
                workflow.BEGIN: ("activityTrigger", self.begin),
                workflow.LIST_PAGES: ("activityTrigger", self.page),
                workflow.SWEEP: ("activityTrigger", self.sweep),
                workflow.RESHARD: ("activityTrigger", self.reshard),
                workflow.FINISH: ("activityTrigger", self.finish),
            },
            max_concurrent_activities=8,
        )
        return self.last_engine

    def rounds(self, instance) -> list:
        """The listing rounds (sub-orchestrations) of an instance, in order."""
        engine = self.last_engine
        return [engine.instances[key] for key in sorted(engine.instances) if key.startswith(f"{instance.instance_id}:")]


JOB = {"jobKey": "render-42", "jobId": "Render-42"}


def episodes(instance, name):
    """The events scheduling ``name``, grouped by the orchestrator episode that scheduled them."""
    grouped, episode = {}, 0
    for event in instance.history:
        episode += event["EventType"] == ORCHESTRATOR_STARTED
        if event.get("Name") == name and event["EventType"] not in COMPLETION_EVENTS:
            grouped.setdefault(episode, []).append(event)
    return list(grouped.values())


def in_flight(instance, name) -> tuple[int, bool]:
    """The most ``name`` activities in flight at once in an instance's history, and whether one was
    started while others were still running (a sliding window, not waves)."""
    scheduled, running, most, overlapped, running_at_episode = set(), 0, 0, False, 0
    for event in instance.history:
        if event["EventType"] == ORCHESTRATOR_STARTED:
            running_at_episode = running
        elif event.get("Name") == name and event["EventType"] not in COMPLETION_EVENTS:
            scheduled.add(event["EventId"])
            overlapped |= running_at_episode > 0  # waves start only once every page of the last is done
            running += 1
            most = max(most, running)
        elif event["EventType"] in COMPLETION_EVENTS and event.get("TaskScheduledId") in scheduled:
            running -= 1
    return most, overlapped


def limited(**limits) -> dict:
    """The job's orchestration input with other listing limits than the defaults."""
    return {**JOB, "limits": ListingLimits(**limits).to_json()}


async def test_listing_fans_out_over_slices_lists_every_task_once_then_sweeps_then_finish():
    # several rounds for a job this small, many calls, and no more slices than pages in flight: slices page on
    job = limited(calls_per_round=5, pages_per_call=1, slices_per_listing=1)
    recorder = Recorder()
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, job, "v1")
    assert instance.runtime_status == "Completed", instance.output
    assert sorted(recorder.listed) == SPREAD_TASKS  # every task exactly once
    assert instance.output == {"jobId": "Render-42", "action": "validated", "tasksListed": len(SPREAD_TASKS)}
    rounds = recorder.rounds(instance)
    assert len(rounds) >= 3 and not episodes(instance, workflow.LIST_PAGES)  # pages live in the rounds' histories
    for listing in rounds:  # each round stops once it started its pages: its history stays short
        assert sum(len(started) for started in episodes(listing, workflow.LIST_PAGES)) <= 5
    flights = [in_flight(listing, workflow.LIST_PAGES) for listing in rounds]
    assert max(most for most, _ in flights) == PARALLEL  # never more pages in flight than allowed
    assert any(overlapped for _, overlapped in flights)  # a page started while others were still listing
    assert any(call[0] == "page" and call[3] is not None for call in recorder.calls)  # a slice paged on
    assert sorted(call for call in recorder.calls if call[0] == "sweep") == [("sweep", s) for s in range(PARTITIONS)]
    assert recorder.calls[-1] == ("finish", len(SPREAD_TASKS), [0, 1, 2])
    [sweeps] = episodes(instance, workflow.SWEEP)  # scheduled together: a fan-out
    assert len(sweeps) == PARTITIONS
    assert instance.custom_status["phase"] == "sweeping" and instance.custom_status["tasksListed"] == len(SPREAD_TASKS)


async def test_a_job_that_outgrew_its_partitions_is_resharded_in_parallel_then_validated_on_the_new_ones():
    recorder = Recorder(reshard_to=12)
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v-grow")
    assert instance.output["action"] == "validated" and sorted(recorder.listed) == SPREAD_TASKS
    [moves] = episodes(instance, workflow.RESHARD)  # every old partition at once
    assert sorted(call[1:] for call in recorder.calls if call[0] == "reshard") == [(s, 12) for s in range(PARTITIONS)]
    assert [call for call in recorder.calls if call[0] == "begin"] == [
        ("begin", "Render-42", None),
        ("begin", "Render-42", 12),
    ]
    assert len(moves) == PARTITIONS
    assert sorted(call[1] for call in recorder.calls if call[0] == "sweep") == list(range(12))


async def test_a_dense_slice_is_split_while_the_fan_out_has_room():
    """Every task created within 40 ticks of one slice: its first page is full, so it is cut finer."""
    dense = [500 + tick % 40 for tick in range(120)]
    recorder = Recorder(tasks=dense)
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v2")
    assert instance.output["action"] == "validated" and sorted(recorder.listed) == sorted(dense)
    assert instance.custom_status["tasksListed"] == len(dense)
    widths = {call[2] - call[1] for call in recorder.calls if call[0] == "page"}
    assert min(widths) < SCAN_STARTED - CREATED  # the full slice holding them was cut


async def test_a_large_job_added_at_once_is_cut_into_more_slices_than_pages_in_flight():
    """4,000 tasks (400 pages here) created within 100 ticks: split beyond the fan-out, so that no few
    dense slices page on alone while the window stands half empty; still never more in flight."""
    dense = [500 + tick % 100 for tick in range(4000)]
    paged_on = []
    for slices_per_listing in (1, SLICES_PER_LISTING):  # as many slices as pages in flight, then more
        recorder = Recorder(tasks=dense)
        job = limited(slices_per_listing=slices_per_listing)
        instance = await recorder.engine().run(workflow.VALIDATE_JOB, job, f"v-burst-{slices_per_listing}")
        assert instance.output["action"] == "validated" and sorted(recorder.listed) == sorted(dense)
        assert max(in_flight(listing, workflow.LIST_PAGES)[0] for listing in recorder.rounds(instance)) == PARALLEL
        paged_on.append(len({call[1:3] for call in recorder.calls if call[0] == "page" and call[3] is not None}))
    assert paged_on[1] > 2 * paged_on[0], paged_on  # smaller slices, so the window stays full to the end


@given(parallel=st.integers(1, 64), pages=st.integers(1, 10**5))
def test_a_listing_is_never_cut_into_more_slices_than_pages_nor_fewer_than_pages_in_flight(parallel, pages):
    limit = workflow.slice_limit(parallel, pages)
    assert min(parallel, pages) <= limit <= min(pages, parallel * SLICES_PER_LISTING)
    assert limit == min(parallel, pages) or pages >= limit * SLICES_PER_LISTING  # extra slices: big ones


async def test_a_job_of_one_page_is_listed_with_one_call():
    recorder = Recorder(tasks=SPREAD_TASKS[:PAGE_SIZE])
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v9")
    assert instance.output["action"] == "validated" and sorted(recorder.listed) == SPREAD_TASKS[:PAGE_SIZE]
    assert [call[1:] for call in recorder.calls if call[0] == "page"] == [(CREATED, SCAN_STARTED, None, False)]


async def test_the_next_pass_slices_only_where_the_last_one_saw_tasks_created():
    dense = [500 + tick % 40 for tick in range(120)]
    first = Recorder(tasks=dense)
    await first.engine().run(workflow.VALIDATE_JOB, JOB, "v10")
    assert first.created_span == [500, 539]
    second = Recorder(tasks=dense + [900, 901], known_span=first.created_span)  # two tasks added since
    instance = await second.engine().run(workflow.VALIDATE_JOB, JOB, "v11")
    assert instance.output["action"] == "validated" and sorted(second.listed) == sorted(dense + [900, 901])
    calls = lambda recorder: sum(call[0] == "page" for call in recorder.calls)  # noqa: E731
    assert calls(second) < calls(first)
    assert second.created_span == [500, 901]


@settings(max_examples=200)
@given(
    created=st.integers(0, 10**6),
    width=st.integers(1, 10**6),
    count=st.integers(1, 16),
    span=st.none() | st.tuples(st.integers(-10, 2 * 10**6), st.integers(0, 10**6)),
    probe=st.integers(0, 10**6),
)
def test_planned_slices_partition_the_job_whatever_the_last_pass_saw(created, width, count, span, probe):
    started = created + width
    known = None if span is None else [span[0], span[0] + span[1]]
    pieces = workflow.planned_slices(created, started, count, known)
    assert pieces[0].low == created and pieces[-1].high == max(started, created + 1)
    assert all(a.high == b.low for a, b in pairwise(pieces))
    assert all(piece.high > piece.low for piece in pieces)
    tick = created + probe % width
    assert sum(piece.low <= tick < piece.high for piece in pieces) == 1


async def test_tasks_created_in_one_tick_page_in_order_within_their_slice():
    """A one-tick slice cannot be split: it pages on, pages_per_call pages a call, the next call
    from where the last one ended."""
    same_tick = [333] * 35
    recorder = Recorder(tasks=same_tick)
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, limited(pages_per_call=2), "v3")
    assert instance.output["action"] == "validated" and recorder.listed == same_tick
    assert [(link, pages) for link, pages, tasks in recorder.paged if tasks] == [(None, 2), ("20", 2)]
    assert instance.custom_status["pages"] == sum(pages for _, pages, _ in recorder.paged)  # pages, not calls


async def test_a_failed_activity_ends_the_job_with_its_reason_and_no_sweep():
    recorder = Recorder(fail_page=2)
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v4")
    assert instance.runtime_status == "Completed"
    assert instance.output["action"] == "failed" and "Batch failed listing tasks" in instance.output["error"]
    assert not any(call[0] in ("sweep", "finish") for call in recorder.calls)


async def test_a_job_deleted_mid_scan_is_removed_not_swept():
    recorder = Recorder(gone_after=4)
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v5")
    assert instance.output == {"jobId": "Render-42", "action": "removed"}
    assert ("remove", "Render-42") in recorder.calls
    assert not any(call[0] in ("sweep", "finish") for call in recorder.calls)


async def test_resuming_a_listing_round_cut_anywhere_finishes_without_redoing_finished_calls():
    """A host restarted mid-round replays that round's history: calls it finished are not made again."""
    random.seed(3)
    recorder = Recorder()
    await recorder.engine().run(workflow.VALIDATE_JOB, limited(pages_per_call=1), "v6")  # a round of many steps
    [full] = recorder.rounds(Instance("v6", workflow.VALIDATE_JOB, None))
    page_calls = len([e for e in full.history if e.get("Name") == workflow.LIST_PAGES])
    cuts = [i for i, e in enumerate(full.history) if e["EventType"] == ORCHESTRATOR_STARTED]
    assert len(cuts) >= 6
    for cut in cuts:
        history = copy.deepcopy(full.history[:cut])
        scheduled = {e["EventId"] for e in history if e.get("Name") == workflow.LIST_PAGES}
        finished = {e["TaskScheduledId"] for e in history if e["EventType"] in COMPLETION_EVENTS} & scheduled
        again = Recorder()
        resumed = await again.engine().resume(
            Instance(full.instance_id, workflow.LIST_SLICES, full.input, history=history)
        )
        assert resumed.output == full.output, f"cut at event {cut}"
        redone = [call for call in again.calls if call[0] == "page"]
        assert len(redone) == page_calls - len(finished), f"cut at event {cut}"


async def test_resuming_the_job_cut_anywhere_gives_the_same_result_and_redoes_no_finished_round():
    random.seed(4)
    recorder = Recorder()
    full = await recorder.engine().run(workflow.VALIDATE_JOB, limited(calls_per_round=4), "v12")
    pages_of = {
        listing.instance_id: sum(e.get("Name") == workflow.LIST_PAGES for e in listing.history)
        for listing in recorder.rounds(full)
    }
    cuts = [i for i, e in enumerate(full.history) if e["EventType"] == ORCHESTRATOR_STARTED]
    for cut in cuts:
        history = copy.deepcopy(full.history[:cut])
        finished = {e["TaskScheduledId"] for e in history if e["EventType"] in COMPLETION_EVENTS}
        done_rounds = [
            e["InstanceId"] for e in history if e.get("Name") == workflow.LIST_SLICES and e["EventId"] in finished
        ]
        again = Recorder()
        resumed = await again.engine().resume(Instance("v12", workflow.VALIDATE_JOB, full.input, history=history))
        assert resumed.output == full.output, f"cut at event {cut}"
        redone = sum(call[0] == "page" for call in again.calls)
        assert redone == sum(pages_of.values()) - sum(pages_of[key] for key in done_rounds), f"cut at event {cut}"


@settings(max_examples=200)
@given(low=st.integers(0, 10**18), width=st.integers(1, 10**12), parts=st.integers(1, 16), probe=st.integers(0, 10**12))
def test_slices_partition_creation_times_exactly(low, width, parts, probe):
    high = low + width
    pieces = workflow.split_slice(Slice(low, high), parts)
    assert pieces[0].low == low and pieces[-1].high == high
    assert all(a.high == b.low for a, b in pairwise(pieces))  # adjacent, no gap, no overlap
    assert all(piece.high > piece.low for piece in pieces) and len(pieces) == min(parts, width)
    tick = low + probe % width
    assert sum(piece.low <= tick < piece.high for piece in pieces) == 1  # a tick is in exactly one


def test_initial_slices_cover_the_job_from_its_creation_to_the_scan():
    pieces = workflow.initial_slices(100, 900, 8)
    assert (pieces[0].low, pieces[-1].high, len(pieces)) == (100, 900, 8)
    assert workflow.initial_slices(500, 400, 8) == [Slice(500, 501, next=None, pages=0)]


async def test_every_replay_schedules_the_same_actions():
    """The engine checks each replay against the history; a clock- or random-driven orchestrator fails."""
    recorder = Recorder()
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v7")
    assert instance.runtime_status == "Completed" and instance.replays > 4

    def flaky(context):
        yield context.call_activity(workflow.BEGIN, {**JOB, "nonce": random.random()})
        yield context.call_activity(workflow.BEGIN, JOB)
        return "done"

    engine = recorder.engine()
    engine.functions["Flaky"] = ("orchestrationTrigger", df.Orchestrator.create(flaky))
    failed = await engine.run("Flaky", None, "v8")
    assert failed.runtime_status == "Failed" and NonDeterminismError.__name__ in failed.output


async def test_the_clean_up_removes_every_job_it_is_given_at_once():
    recorder = Recorder()
    gone = [{"jobKey": f"g{n}", "jobId": f"G{n}", "reason": "JobNotFound"} for n in range(5)]
    instance = await recorder.engine().run(workflow.REMOVE_JOBS, gone, workflow.REMOVAL_INSTANCE_ID)
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output == [{"jobId": f"G{n}", "action": "removed"} for n in range(5)]
    [removals] = episodes(instance, workflow.REMOVE_JOB)  # scheduled together: a fan-out
    assert len(removals) == 5


def test_workflow_names_are_function_folders_with_the_right_trigger():
    from tools.funchost import FunctionApp

    app = FunctionApp.load()
    expected = {
        workflow.REMOVE_JOBS: "orchestrationTrigger",
        workflow.VALIDATE_JOB: "orchestrationTrigger",
        workflow.LIST_SLICES: "orchestrationTrigger",
    }
    expected.update(
        {
            name: "activityTrigger"
            for name in (
                workflow.REMOVE_JOB,
                workflow.BEGIN,
                workflow.RESHARD,
                workflow.LIST_PAGES,
                workflow.SWEEP,
                workflow.FINISH,
            )
        }
    )
    for name, trigger in expected.items():
        assert app.functions[name].trigger["type"] == trigger


def test_the_orchestrator_imports_no_azure_sdk():
    """Orchestrators replay: the modules they run must stay pure (no I/O, no SDK behind an import)."""
    import subprocess
    import sys

    code = (
        "import shared.validation.workflow, shared.validation.payloads, sys;"
        "print([m for m in sys.modules if m.split('.')[0] == 'azure'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout
