"""The validation workflow through real replays of the library's own orchestrator handler.

Activities are stand-ins that record their inputs (the real ones are tested against the Batch
simulator and Azurite in tests/functional/test_validation.py)."""
import asyncio
import copy
import random

import azure.durable_functions as df
import pytest

import ValidateCountsOrchestrator
import ValidateJobOrchestrator
from shared import workflow
from tools.durable import COMPLETION_EVENTS, ORCHESTRATOR_STARTED, DurableEngine, Instance, NonDeterminismError

PAGES = 4
PARTITIONS = 3


class Recorder:
    """Stand-in activities for one job of PAGES pages and PARTITIONS partitions."""

    def __init__(self, fail_page: int | None = None):
        self.calls: list[tuple[str, object]] = []
        self.fail_page = fail_page

    async def begin(self, job):
        self.calls.append(("begin", job["jobId"]))
        return {**job, "action": "validate", "scanId": "s1", "scanStartedTicks": 1, "partitions": PARTITIONS,
                "expectedTasks": PAGES * 10}

    async def page(self, scan):
        self.calls.append(("page", scan["page"], scan["next"]))
        await asyncio.sleep(0)
        if scan["page"] == self.fail_page:
            raise RuntimeError("Batch failed listing tasks")
        last = scan["page"] == PAGES - 1
        return {"next": None if last else f"link-{scan['page'] + 1}", "listed": 10, "invalid": 0}

    async def sweep(self, scan):
        self.calls.append(("sweep", scan["shard"]))
        await asyncio.sleep(random.random() / 100)  # finish out of order
        return {"checked": 10, "missing": scan["shard"], "stale": 0, "removed": 0,
                "countersRepaired": 0, "counterCheckDeferred": 0}

    async def finish(self, scan):
        self.calls.append(("finish", scan["tasksListed"], sorted(s["missing"] for s in scan["sweeps"])))
        return {"jobId": scan["jobId"], "action": "validated", "tasksListed": scan["tasksListed"]}

    async def select(self, _):
        self.calls.append(("select",))
        return {"validate": [{"jobKey": f"j{n}", "jobId": f"J{n}"} for n in range(6)],
                "remove": [{"jobKey": "gone", "jobId": "Gone", "reason": "JobNotFound"}]}

    async def remove(self, job):
        self.calls.append(("remove", job["jobId"]))
        return {"jobId": job["jobId"], "action": "removed"}

    def engine(self) -> DurableEngine:
        return DurableEngine({
            workflow.VALIDATE_COUNTS: ("orchestrationTrigger", ValidateCountsOrchestrator.main),
            workflow.VALIDATE_JOB: ("orchestrationTrigger", ValidateJobOrchestrator.main),
            workflow.SELECT_JOBS: ("activityTrigger", self.select),
            workflow.REMOVE_JOB: ("activityTrigger", self.remove),
            workflow.BEGIN: ("activityTrigger", self.begin),
            workflow.LIST_PAGE: ("activityTrigger", self.page),
            workflow.SWEEP: ("activityTrigger", self.sweep),
            workflow.FINISH: ("activityTrigger", self.finish),
        }, max_concurrent_activities=4)


JOB = {"jobKey": "render-42", "jobId": "Render-42"}


async def test_pages_in_turn_then_sweeps_fan_out_then_finish():
    recorder = Recorder()
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v1")
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output == {"jobId": "Render-42", "action": "validated", "tasksListed": PAGES * 10}
    pages = [call for call in recorder.calls if call[0] == "page"]
    assert pages == [("page", 0, None)] + [("page", n, f"link-{n}") for n in range(1, PAGES)]
    assert sorted(call for call in recorder.calls if call[0] == "sweep") == [("sweep", s) for s in range(PARTITIONS)]
    assert recorder.calls[-1] == ("finish", PAGES * 10, [0, 1, 2])
    # the sweeps were scheduled together, in one episode (a fan-out), not one after another
    sweep_ids = [e["EventId"] for e in instance.history if e.get("Name") == workflow.SWEEP]
    episode_of = {}
    episode = 0
    for event in instance.history:
        episode += event["EventType"] == ORCHESTRATOR_STARTED
        episode_of[event.get("EventId")] = episode
    assert len({episode_of[i] for i in sweep_ids}) == 1
    assert instance.custom_status["phase"] == "sweeping" and instance.custom_status["tasksListed"] == PAGES * 10


async def test_a_failed_activity_ends_the_job_with_its_reason_and_no_sweep():
    recorder = Recorder(fail_page=2)
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v2")
    assert instance.runtime_status == "Completed"
    assert instance.output["action"] == "failed" and "Batch failed listing tasks" in instance.output["error"]
    assert not any(call[0] in ("sweep", "finish") for call in recorder.calls)


async def test_resuming_from_a_history_cut_anywhere_finishes_without_redoing_finished_pages():
    full = await Recorder().engine().run(workflow.VALIDATE_JOB, JOB, "v3")
    cuts = [i for i, e in enumerate(full.history) if e["EventType"] == ORCHESTRATOR_STARTED]
    assert len(cuts) >= PAGES + 2
    for cut in cuts:
        history = copy.deepcopy(full.history[:cut])
        finished_pages = {e["TaskScheduledId"] for e in history if e["EventType"] in COMPLETION_EVENTS}
        recorder = Recorder()
        saved = Instance("v3", workflow.VALIDATE_JOB, full.input, history=history)
        resumed = await recorder.engine().resume(saved)
        assert resumed.output == full.output, f"cut at event {cut}"
        redone = [call for call in recorder.calls if call[0] == "page"]
        scheduled_pages = {e["EventId"]: e for e in full.history[:cut] if e.get("Name") == workflow.LIST_PAGE}
        assert len(redone) == PAGES - len([i for i in scheduled_pages if i in finished_pages]), f"cut at event {cut}"


async def test_every_replay_schedules_the_same_actions():
    """The engine checks each replay against the history; a clock- or random-driven orchestrator fails."""
    recorder = Recorder()
    instance = await recorder.engine().run(workflow.VALIDATE_JOB, JOB, "v4")
    assert instance.runtime_status == "Completed" and instance.replays > PAGES

    def flaky(context):
        yield context.call_activity(workflow.BEGIN, {**JOB, "nonce": random.random()})
        yield context.call_activity(workflow.BEGIN, JOB)
        return "done"

    engine = recorder.engine()
    engine.functions["Flaky"] = ("orchestrationTrigger", df.Orchestrator.create(flaky))
    failed = await engine.run("Flaky", None, "v5")
    assert failed.runtime_status == "Failed" and NonDeterminismError.__name__ in failed.output


async def test_scheduled_pass_validates_jobs_in_waves_and_removes_gone_jobs():
    recorder = Recorder()
    instance = await recorder.engine().run(workflow.VALIDATE_COUNTS, None, workflow.SCHEDULED_INSTANCE_ID)
    assert instance.runtime_status == "Completed", instance.output
    assert [job["jobId"] for job in instance.output["jobs"]] == [f"J{n}" for n in range(6)]
    assert instance.output["removed"] == [{"jobId": "Gone", "action": "removed"}]
    children = [e for e in instance.history if e.get("Name") == workflow.VALIDATE_JOB]
    assert [c["InstanceId"] for c in children] == [f"validate-counts:j{n}" for n in range(6)]
    assert instance.custom_status == {"jobs": 6, "jobsDone": 6}
    waves = {}
    episode = 0
    for event in instance.history:
        episode += event["EventType"] == ORCHESTRATOR_STARTED
        if event.get("Name") == workflow.VALIDATE_JOB:
            waves.setdefault(episode, []).append(event["InstanceId"])
    assert [len(wave) for wave in waves.values()] == [workflow.PARALLEL_JOBS, 6 - workflow.PARALLEL_JOBS]


def test_workflow_names_are_function_folders_with_the_right_trigger():
    from tools.funchost import FunctionApp
    app = FunctionApp.load()
    expected = {workflow.VALIDATE_COUNTS: "orchestrationTrigger", workflow.VALIDATE_JOB: "orchestrationTrigger"}
    expected.update({name: "activityTrigger" for name in (workflow.SELECT_JOBS, workflow.REMOVE_JOB, workflow.BEGIN,
                                                          workflow.LIST_PAGE, workflow.SWEEP, workflow.FINISH)})
    for name, trigger in expected.items():
        assert app.functions[name].trigger["type"] == trigger
