"""The simulator's in-memory Batch account: jobs, tasks, transitions, and two outboxes: the
events an Event Grid producer would publish, and what Batch writes to its own service log."""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from tools.batchsim.wire import TICKS_PER_SECOND, is_id, iso

ACTIVE, PREPARING, RUNNING, COMPLETED = "active", "preparing", "running", "completed"
# What happened to a task (an OutboxEvent's kind): decides which service-log records Batch writes.
ADDED, STARTED, COMPLETED_RUN, RETRIED, REQUEUED, REACTIVATED, TERMINATED, DELETED, SCHEDULE_FAILED = (
    "added",
    "started",
    "completed",
    "retried",
    "requeued",
    "reactivated",
    "terminated",
    "deleted",
    "scheduleFailed",
)
RESOURCE_ID = (
    "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/SIM"
    "/PROVIDERS/MICROSOFT.BATCH/BATCHACCOUNTS/SIMACCOUNT"
)


class SimError(Exception):
    """A Batch error: HTTP status, Batch error code, message."""

    def __init__(self, status: int, code: str, message: str, values: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.values = status, code, message, values


@dataclass(slots=True)
class SimTask:
    id: str
    creation_ticks: int
    state_ticks: int
    state: str = ACTIVE
    previous_state: str | None = None
    previous_ticks: int | None = None
    result: str | None = None
    exit_code: int | None = None
    retry_count: int = 0
    requeue_count: int = 0
    required_slots: int = 1
    start_ticks: int | None = None  # when the current attempt started running

    def to_json(self, job_url: str, select: Iterable[str] | None = None) -> dict:
        """The REST task object, or only its ``select``-ed top-level properties ($select): a listing
        renders a million of these, and the simulator stands in for a remote Batch, so it spends this
        machine's CPU only on what was asked for."""
        body = {}
        for name in _TASK_PROPERTIES if select is None else select:
            render = _TASK_PROPERTIES.get(name)
            value = render(self, job_url) if render else None
            if value is not None:
                body[name] = value
        return body


def _execution_info(task: SimTask, _: str) -> dict:
    info: dict = {"retryCount": task.retry_count, "requeueCount": task.requeue_count}
    if task.state == COMPLETED:
        info.update({"result": task.result, "exitCode": task.exit_code})
    return info


# A task's REST properties, in Batch's order: name -> its value (None: absent).
_TASK_PROPERTIES: dict[str, Callable[[SimTask, str], object]] = {
    "id": lambda task, _: task.id,
    "url": lambda task, job_url: f"{job_url}/tasks/{task.id}",
    "eTag": lambda task, _: f"0x{task.state_ticks:X}",
    "creationTime": lambda task, _: iso(task.creation_ticks),
    "lastModified": lambda task, _: iso(task.state_ticks),
    "state": lambda task, _: task.state,
    "stateTransitionTime": lambda task, _: iso(task.state_ticks),
    "previousState": lambda task, _: task.previous_state,
    "previousStateTransitionTime": lambda task, _: None if task.previous_ticks is None else iso(task.previous_ticks),
    "commandLine": lambda task, _: "/bin/sh -c 'true'",
    "requiredSlots": lambda task, _: task.required_slots,
    "executionInfo": _execution_info,
}


@dataclass
class SimJob:
    id: str
    creation_ticks: int
    tasks: dict[str, SimTask] = field(default_factory=dict)
    state: str = "active"
    _order: list[str] = field(default_factory=list)
    _by_creation: list[tuple[int, str]] = field(default_factory=list)
    _sorted: bool = True

    def ordered_keys(self) -> list[str]:
        if not self._sorted:
            self._order = sorted(self.tasks)
            self._by_creation = sorted((task.creation_ticks, key) for key, task in self.tasks.items())
            self._sorted = True
        return self._order

    def keys_created_between(self, low: int | None, high: int | None, after: str | None) -> Iterator[str]:
        """The keys of tasks created in [low, high), in (creation time, key) order, after the position
        ``after`` (``creation_position`` of the last key listed): an index walk, so a page of one
        creation-time slice costs the same in a job of any size, as in Batch."""
        self.ordered_keys()
        index = self._by_creation
        start = 0 if low is None else bisect.bisect_left(index, (low, ""))
        if after is not None:
            start = max(start, bisect.bisect_right(index, parse_creation_position(after)))
        end = len(index) if high is None else bisect.bisect_left(index, (high, ""))
        for position in range(start, end):
            key = index[position][1]
            if key in self.tasks and self.tasks[key].creation_ticks == index[position][0]:
                yield key

    def creation_position(self, key: str) -> str:
        return f"{self.tasks[key].creation_ticks}:{key}"

    def keys_after(self, after: str | None) -> Iterator[str]:
        keys = self.ordered_keys()
        start = 0 if after is None else bisect.bisect_right(keys, after)
        for index in range(start, len(keys)):
            key = keys[index]
            if key in self.tasks:  # deleted tasks leave stale keys until the next re-sort
                yield key


def parse_creation_position(position: str) -> tuple[int, str]:
    ticks, _, key = position.partition(":")
    if not ticks.isdigit() or not key:
        raise SimError(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            {"QueryParameterName": "$skiptoken", "QueryParameterValue": position},
        )
    return int(ticks), key


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A task-state change as the producer publishes it (rendered to JSON at publish time)."""

    sequence: int
    job_id: str
    task: tuple  # (id, state, ticks, previous_state, result, exit_code, retry, requeue, slots); state None = deleted
    kind: str = ""  # ADDED, STARTED, ... (what happened)
    start_ticks: int | None = None  # when the current attempt started running (completions)

    def to_event_grid(self) -> dict:
        task_id, state, ticks, previous, result, exit_code, retries, requeues, slots = self.task
        when = iso(ticks)
        base = {
            "id": f"sim-{self.sequence}",
            "subject": f"jobs/{self.job_id}/tasks/{task_id}",
            "eventTime": when,
            "dataVersion": "1.0",
        }
        if state is None:
            return {**base, "eventType": "Batch.TaskDeleted", "data": {"jobId": self.job_id, "id": task_id}}
        execution = {"retryCount": retries, "requeueCount": requeues}
        if state == COMPLETED:
            execution.update({"result": result, "exitCode": exit_code})
        data = {
            "jobId": self.job_id,
            "id": task_id,
            "state": state,
            "stateTransitionTime": when,
            "requiredSlots": slots,
            "executionInfo": execution,
        }
        if previous is not None:
            data["previousState"] = previous
        return {**base, "eventType": "Batch.TaskStateChanged", "data": data}

    def to_service_log(self) -> list[dict]:
        """The records Batch's service log holds for this change (none for adds, retries,
        reactivations and deletes: Batch logs no event for those)."""
        task_id, state, ticks, previous, result, exit_code, retries, requeues, slots = self.task
        common = {
            "jobId": self.job_id,
            "id": task_id,
            "taskType": "User",
            "systemTaskVersion": self.sequence,
            "requiredSlots": slots,
            "nodeInfo": {"poolId": "simpool", "nodeId": "tvmps_sim_0"},
            "multiInstanceSettings": {"numberOfInstances": 1},
            "constraints": {"maxTaskRetryCount": 3},
        }
        if self.kind == STARTED and previous == ACTIVE:
            return [
                _log_record(
                    "TaskStartEvent",
                    ticks,
                    {**common, "executionInfo": {"startTime": iso(ticks), "retryCount": retries}},
                )
            ]
        if self.kind in (COMPLETED_RUN, TERMINATED):
            execution = {
                "endTime": iso(ticks),
                "exitCode": exit_code,
                "retryCount": retries,
                "requeueCount": requeues,
                "result": result.capitalize(),
            }
            if self.start_ticks is not None:
                execution["startTime"] = iso(self.start_ticks)
            if exit_code is None:  # failed before it ran
                execution["schedulingError"] = {
                    "category": "UserError",
                    "code": "ResourceFileDownloadFailed",
                    "message": "One of the specified resource files failed to download",
                    "details": [],
                }
            records = [_log_record("TaskCompleteEvent", ticks, {**common, "executionInfo": execution})]
            if result == "failure":
                records.append(_log_record("TaskFailEvent", ticks, {**common, "executionInfo": execution}))
            return records
        if self.kind == REQUEUED:
            return [
                _log_record(
                    "TaskRequeueEvent",
                    ticks,
                    {**common, "executionInfo": {"retryCount": retries, "requeueCount": requeues}},
                )
            ]
        if self.kind == SCHEDULE_FAILED:
            return [
                _log_record(
                    "TaskScheduleFailEvent",
                    ticks,
                    {
                        **common,
                        "nodeInfo": {"poolId": "simpool", "nodeId": ""},
                        "schedulingError": {
                            "category": "ServerError",
                            "code": "TaskSchedulingFailed",
                            "message": "The task could not be scheduled; it will be retried",
                        },
                    },
                )
            ]
        return []

    def to_cloud_event(self) -> dict:
        grid = self.to_event_grid()
        return {
            "specversion": "1.0",
            "id": grid["id"],
            "source": "/batchsim",
            "type": grid["eventType"],
            "time": grid["eventTime"],
            "subject": grid["subject"],
            "data": grid["data"],
        }


def _log_record(operation: str, ticks: int, properties: dict) -> dict:
    return {
        "time": iso(ticks),
        "resourceId": RESOURCE_ID,
        "category": "ServiceLog",
        "operationName": operation,
        "operationVersion": "2017-01-01",
        "properties": properties,
    }


def counts_of_events(events: list[OutboxEvent]) -> dict:
    """The task counts a perfect consumer of exactly these events shows: each task at its newest
    event (by the order the simulator produced them). With every event, that is the truth."""
    newest: dict[tuple[str, str], OutboxEvent] = {}
    for event in sorted(events, key=lambda e: e.sequence):
        newest[(event.job_id.lower(), event.task[0].lower())] = event
    counts = {name: 0 for name in ("active", "running", "completed", "succeeded", "failed")}
    for event in newest.values():
        state, result = event.task[1], event.task[4]
        if state is None:
            continue
        names = (
            ["active"]
            if state == ACTIVE
            else ["running"]
            if state in (RUNNING, PREPARING)
            else ["completed", "succeeded" if result == "success" else "failed"]
        )
        for name in names:
            counts[name] += 1
    return counts


class BatchAccount:
    """Jobs and tasks in memory; every transition is stamped with a strictly increasing time."""

    def __init__(self, clock: Callable[[], float] = time.time, keep_service_log: bool = False):
        self.jobs: dict[str, SimJob] = {}
        self.outbox: list[OutboxEvent] = []  # for an Event Grid producer (``publish=False`` loses one)
        self.log_outbox: list[OutboxEvent] = []  # every change, for the service log (tools.batchsim.hub)
        self._keep_service_log = keep_service_log
        self._clock = clock
        self._last_ticks = 0
        self._sequence = 0

    def now_ticks(self) -> int:
        ticks = int(self._clock() * TICKS_PER_SECOND)
        self._last_ticks = max(ticks, self._last_ticks + 1)
        return self._last_ticks

    # ---- jobs and tasks ------------------------------------------------------------------

    def job(self, job_id: str) -> SimJob:
        job = self.jobs.get(job_id.lower())
        if job is None:
            raise SimError(404, "JobNotFound", f"The specified job does not exist.\nJobId:{job_id}")
        return job

    def create_job(self, job_id: str) -> SimJob:
        if not is_id(job_id):
            raise SimError(400, "InvalidPropertyValue", f"The job id {job_id!r} is not valid.")
        if job_id.lower() in self.jobs:
            raise SimError(409, "JobExists", f"The specified job already exists.\nJobId:{job_id}")
        job = self.jobs[job_id.lower()] = SimJob(job_id, self.now_ticks())
        return job

    def delete_job(self, job_id: str) -> None:
        self.jobs.pop(self.job(job_id).id.lower())

    def add_tasks(self, job_id: str, task_ids: list[str], required_slots: int = 1, publish: bool = True) -> None:
        job = self.job(job_id)
        for task_id in task_ids:
            if not is_id(task_id):
                raise SimError(400, "InvalidPropertyValue", f"The task id {task_id!r} is not valid.")
            if task_id.lower() in job.tasks:
                raise SimError(409, "TaskExists", f"The specified task already exists.\nTaskId:{task_id}")
        for task_id in task_ids:
            ticks = self.now_ticks()
            task = SimTask(task_id, ticks, ticks, required_slots=required_slots)
            job.tasks[task_id.lower()] = task
            self._record(job, task, publish, ADDED)
        job._sorted = False

    def task(self, job_id: str, task_id: str) -> tuple[SimJob, SimTask]:
        job = self.job(job_id)
        task = job.tasks.get(task_id.lower())
        if task is None:
            raise SimError(404, "TaskNotFound", f"The specified task does not exist.\nTaskId:{task_id}")
        return job, task

    # ---- transitions (each records an outbox event unless publish=False: a lost event) -----

    def start(self, job_id: str, task_id: str, preparing: bool = False, publish: bool = True) -> None:
        job, task = self._move(job_id, task_id, {ACTIVE, PREPARING}, PREPARING if preparing else RUNNING)
        if task.previous_state == ACTIVE:
            task.start_ticks = task.state_ticks
        self._record(job, task, publish, STARTED)

    def complete(self, job_id: str, task_id: str, exit_code: int | None = 0, publish: bool = True) -> None:
        """Completion with an exit code; None: the task failed before it ran (e.g. a resource file)."""
        job, task = self._move(job_id, task_id, {RUNNING, PREPARING, ACTIVE}, COMPLETED)
        task.result, task.exit_code = ("success" if exit_code == 0 else "failure"), exit_code
        if task.previous_state == ACTIVE:
            task.start_ticks = None  # this attempt never ran
        self._record(job, task, publish, COMPLETED_RUN)

    def advance(self, job_id: str, publish: bool = True) -> int:
        """One step forward, as a steadily working pool moves a job: a running task completes
        (success) and an active one starts; the job's completed count after it (it never falls)."""
        job = self.job(job_id)
        running = next((task for task in job.tasks.values() if task.state == RUNNING), None)
        waiting = next((task for task in job.tasks.values() if task.state == ACTIVE), None)
        if running is not None:
            self.complete(job_id, running.id, 0, publish=publish)
        if waiting is not None:
            self.start(job_id, waiting.id, publish=publish)
        return sum(task.state == COMPLETED for task in job.tasks.values())

    def schedule_fail(self, job_id: str, task_id: str, publish: bool = True) -> None:
        """A temporary scheduling failure: the task stays active (Batch retries scheduling it)."""
        job, task = self.task(job_id, task_id)
        if task.state != ACTIVE:
            raise SimError(
                409, "InvalidTaskState", f"Task {task.id} is {task.state}; only an active task can fail scheduling."
            )
        self._emit(
            job,
            (
                task.id,
                ACTIVE,
                self.now_ticks(),
                ACTIVE,
                None,
                None,
                task.retry_count,
                task.requeue_count,
                task.required_slots,
            ),
            publish,
            SCHEDULE_FAILED,
        )

    def retry(self, job_id: str, task_id: str, publish: bool = True) -> None:
        """A failed attempt with retries left: running -> active, retryCount + 1."""
        job, task = self._move(job_id, task_id, {RUNNING, PREPARING}, ACTIVE)
        task.retry_count += 1
        self._record(job, task, publish, RETRIED)

    def requeue(self, job_id: str, task_id: str, publish: bool = True) -> None:
        """The node went away: running -> active, requeueCount + 1."""
        job, task = self._move(job_id, task_id, {RUNNING, PREPARING}, ACTIVE)
        task.requeue_count += 1
        self._record(job, task, publish, REQUEUED)

    def reactivate(self, job_id: str, task_id: str, publish: bool = True) -> None:
        _, task = self.task(job_id, task_id)
        if task.result != "failure":
            raise SimError(409, "InvalidTaskState", "Only a task that completed with failure can be reactivated.")
        job, task = self._move(job_id, task_id, {COMPLETED}, ACTIVE)
        task.result = task.exit_code = None
        task.retry_count = 0
        self._record(job, task, publish, REACTIVATED)

    def terminate(self, job_id: str, task_id: str, publish: bool = True) -> None:
        job, task = self._move(job_id, task_id, {ACTIVE, PREPARING, RUNNING}, COMPLETED)
        task.result, task.exit_code = "failure", -1
        self._record(job, task, publish, TERMINATED)

    def delete_task(self, job_id: str, task_id: str, publish: bool = True) -> None:
        job, task = self.task(job_id, task_id)
        del job.tasks[task_id.lower()]
        self._emit(job, (task.id, None, self.now_ticks(), None, None, None, 0, 0, 1), publish, DELETED)

    def _move(self, job_id: str, task_id: str, allowed: set[str], new_state: str) -> tuple[SimJob, SimTask]:
        """Change a task's state; the caller records the change (with its kind)."""
        job, task = self.task(job_id, task_id)
        if task.state not in allowed:
            raise SimError(409, "InvalidTaskState", f"Task {task.id} is {task.state}; cannot move to {new_state}.")
        task.previous_state, task.previous_ticks = task.state, task.state_ticks
        task.state, task.state_ticks = new_state, self.now_ticks()
        if new_state != COMPLETED:
            task.result = task.exit_code = None
        return job, task

    def _record(self, job: SimJob, task: SimTask, publish: bool, kind: str) -> None:
        self._emit(
            job,
            (
                task.id,
                task.state,
                task.state_ticks,
                task.previous_state,
                task.result,
                task.exit_code,
                task.retry_count,
                task.requeue_count,
                task.required_slots,
            ),
            publish,
            kind,
            task.start_ticks,
        )

    def _emit(self, job: SimJob, snapshot: tuple, publish: bool, kind: str, start_ticks: int | None = None) -> None:
        self._sequence += 1
        event = OutboxEvent(self._sequence, job.id, snapshot, kind, start_ticks)
        if self._keep_service_log:  # Batch always logs; loss is the hub pump's fault to inject
            self.log_outbox.append(event)
        if publish:
            self.outbox.append(event)

    # ---- a workload -----------------------------------------------------------------------

    def step(self, job_id: str, rng: random.Random, moves: int, publish: bool = True, deletes: bool = True) -> int:
        """Advance ``moves`` random tasks one step along a realistic lifecycle; returns moves made.

        active -> a scheduling failure (3%, stays active), failed before running (2%), else running
        (10% via preparing); running -> completed (85% success, 10% failure) or retry (4%) or
        requeue (1%); failed -> reactivated (20%); completed -> deleted (2%).
        """
        job = self.job(job_id)
        keys = job.ordered_keys()
        made = 0
        for _ in range(moves):
            if not job.tasks:
                break
            key = keys[rng.randrange(len(keys))]
            task = job.tasks.get(key)
            if task is None:
                continue
            roll = rng.random()
            if task.state == ACTIVE:
                if roll < 0.03:
                    self.schedule_fail(job.id, task.id, publish=publish)
                elif roll < 0.05:
                    self.complete(job.id, task.id, None, publish=publish)
                else:
                    self.start(job.id, task.id, preparing=roll < 0.15, publish=publish)
            elif task.state == PREPARING:
                self.start(job.id, task.id, publish=publish)
            elif task.state == RUNNING:
                if roll < 0.85:
                    self.complete(job.id, task.id, 0, publish=publish)
                elif roll < 0.95:
                    self.complete(job.id, task.id, 1 + int(roll * 100) % 7, publish=publish)
                elif roll < 0.99:
                    self.retry(job.id, task.id, publish=publish)
                else:
                    self.requeue(job.id, task.id, publish=publish)
            elif task.result == "failure" and roll < 0.2:
                self.reactivate(job.id, task.id, publish=publish)
            elif roll < 0.02 and deletes:
                self.delete_task(job.id, task.id, publish=publish)  # its key stays in ``keys``: skipped above
            else:
                continue
            made += 1
        return made

    def finish(self, job_id: str, rng: random.Random, publish: bool = True) -> int:
        """Run every unfinished task to completion (90% success); returns the tasks moved."""
        job = self.job(job_id)
        moved = 0
        for task in list(job.tasks.values()):
            if task.state == COMPLETED:
                continue
            if task.state != RUNNING:
                self.start(job.id, task.id, publish=publish)
            self.complete(job.id, task.id, 0 if rng.random() < 0.9 else 1, publish=publish)
            moved += 1
        return moved

    def take_outbox(self) -> list[OutboxEvent]:
        events, self.outbox = self.outbox, []
        return events

    def take_log_outbox(self) -> list[OutboxEvent]:
        events, self.log_outbox = self.log_outbox, []
        return events

    # ---- the truth ------------------------------------------------------------------------

    def task_counts(self, job_id: str) -> dict:
        counts = {name: 0 for name in ("active", "running", "completed", "succeeded", "failed")}
        slots = dict(counts)
        for task in self.job(job_id).tasks.values():
            names = (
                ["active"]
                if task.state == ACTIVE
                else ["running"]
                if task.state in (RUNNING, PREPARING)
                else ["completed", "succeeded" if task.result == "success" else "failed"]
            )
            for name in names:
                counts[name] += 1
                slots[name] += task.required_slots
        return {"taskCounts": counts, "taskSlotCounts": slots}
