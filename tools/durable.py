"""A local Durable Functions engine for development and tests (production uses the real host).

Orchestrators run through real replays: their ``df.Orchestrator.create`` handler is called with
the orchestration history as JSON, exactly as the host does, and returns its actions. New
actions are appended to the history as scheduled, executed (activities with bounded
concurrency, sub-orchestrations as child instances), and their results appended as completion
events; then the orchestrator is replayed again. Each replay must repeat the actions of the
previous one (determinism is checked). State lives in memory: a restarted process forgets
running instances, but an instance can be resumed from a saved history (see ``resume``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

# History event types and action types of the Durable Task protocol (schema version 1).
ORCHESTRATOR_STARTED, EXECUTION_STARTED, ORCHESTRATOR_COMPLETED = 12, 0, 13
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
SUB_CREATED, SUB_COMPLETED, SUB_FAILED = 7, 8, 9
CALL_ACTIVITY, CALL_SUB_ORCHESTRATOR, WHEN_ANY, WHEN_ALL = 0, 2, 11, 12
SCHEDULING_EVENTS = {TASK_SCHEDULED, SUB_CREATED}
COMPLETION_EVENTS = {TASK_COMPLETED, TASK_FAILED, SUB_COMPLETED, SUB_FAILED}


class NonDeterminismError(RuntimeError):
    """A replay produced different actions than the history recorded."""


@dataclass
class Instance:
    instance_id: str
    name: str
    input: str | None  # JSON text
    history: list[dict] = field(default_factory=list)
    runtime_status: str = "Pending"  # Pending, Running, Completed, Failed, Terminated
    output: Any = None
    custom_status: Any = None
    created_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_updated_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    replays: int = 0

    def status_json(self, show_history: bool = False) -> dict:
        body = {
            "name": self.name,
            "instanceId": self.instance_id,
            "runtimeStatus": self.runtime_status,
            "input": json.loads(self.input) if self.input else None,
            "customStatus": self.custom_status,
            "output": self.output,
            "createdTime": _iso(self.created_time),
            "lastUpdatedTime": _iso(self.last_updated_time),
        }
        if show_history:
            body["historyEvents"] = self.history
        return body


class DurableEngine:
    """Runs orchestrations of the given functions: name -> (trigger type, entry point)."""

    def __init__(self, functions: dict[str, tuple[str, Callable]], max_concurrent_activities: int = 10):
        self.functions = functions
        self.instances: dict[str, Instance] = {}
        self._activity_slots = asyncio.Semaphore(max_concurrent_activities)
        self._running: dict[str, asyncio.Task] = {}

    # ---- client operations ------------------------------------------------------------------

    def start(self, name: str, payload_json: str | None, instance_id: str | None = None) -> Instance:
        """Start in the background (replacing a finished instance of the same id)."""
        instance_id = instance_id or uuid.uuid4().hex
        current = self.instances.get(instance_id)
        if current is not None and current.runtime_status in ("Pending", "Running"):
            raise ValueError(f"an instance with id {instance_id!r} is already {current.runtime_status.lower()}")
        self._require(name, "orchestrationTrigger")
        instance = self.instances[instance_id] = Instance(instance_id, name, payload_json)
        self._running[instance_id] = asyncio.get_running_loop().create_task(self._drive(instance))
        return instance

    async def run(self, name: str, payload: Any = None, instance_id: str | None = None) -> Instance:
        """Start and wait for the end."""
        instance = self.start(name, None if payload is None else json.dumps(payload), instance_id)
        await self._running[instance.instance_id]
        return instance

    async def resume(self, instance: Instance) -> Instance:
        """Continue an instance from its (saved) history: what a host does after a restart."""
        self.instances[instance.instance_id] = instance
        await self._drive(instance)
        return instance

    def terminate(self, instance_id: str, reason: str) -> bool:
        task = self._running.get(instance_id)
        instance = self.instances.get(instance_id)
        if instance is None or instance.runtime_status not in ("Pending", "Running"):
            return False
        if task is not None:
            task.cancel()
        instance.runtime_status, instance.output = "Terminated", reason
        instance.last_updated_time = datetime.now(UTC)
        return True

    async def wait(self, instance_id: str) -> Instance:
        task = self._running.get(instance_id)
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass
        return self.instances[instance_id]

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    # ---- the replay loop --------------------------------------------------------------------

    async def _drive(self, instance: Instance) -> None:
        instance.runtime_status = "Running"
        try:
            await self._replay_until_done(instance)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the orchestration fails; the engine carries on
            instance.runtime_status, instance.output = "Failed", f"{type(error).__name__}: {error}"
        instance.last_updated_time = datetime.now(UTC)

    async def _replay_until_done(self, instance: Instance) -> None:
        handler = self._require(instance.name, "orchestrationTrigger")
        history = instance.history
        if not history:
            history += [
                _event(ORCHESTRATOR_STARTED),
                _event(EXECUTION_STARTED, Name=instance.name, Input=instance.input, Version=""),
            ]
        scheduled = [e for e in history if e["EventType"] in SCHEDULING_EVENTS]
        completed = {e["TaskScheduledId"] for e in history if e["EventType"] in COMPLETION_EVENTS}
        # After a restart, work that was scheduled but never completed is run again (at-least-once).
        pending = {e["EventId"]: self._execute(instance, e) for e in scheduled if e["EventId"] not in completed}
        while True:
            state = self._call_orchestrator(handler, instance)
            instance.replays += 1
            leaves = list(_leaf_actions(state.get("actions", [])))
            for index, recorded in enumerate(scheduled):
                if index >= len(leaves) or _action_signature(leaves[index]) != _event_signature(recorded):
                    raise NonDeterminismError(
                        f"replay {instance.replays} of {instance.instance_id} scheduled "
                        f"{_action_signature(leaves[index]) if index < len(leaves) else 'nothing'} where the "
                        f"history has {_event_signature(recorded)}"
                    )
            for index in range(len(scheduled), len(leaves)):
                event = _scheduling_event(index, leaves[index], instance.instance_id)
                history.append(event)
                scheduled.append(event)
                pending[index] = self._execute(instance, event)
            history.append(_event(ORCHESTRATOR_COMPLETED))
            instance.custom_status = state.get("customStatus", instance.custom_status)
            instance.last_updated_time = datetime.now(UTC)
            if state.get("isDone"):
                instance.runtime_status, instance.output = "Completed", state.get("output")
                return
            if not pending:
                raise RuntimeError(
                    "the orchestrator waits for something this local engine does not provide "
                    "(timers, external events and entities are not supported)"
                )
            try:
                done, _ = await asyncio.wait(pending.values(), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # terminated: unlike the real host, stop its work in flight too,
                for task in pending.values():  # so a test's terminated instance burns no CPU after it
                    task.cancel()
                raise
            history.append(_event(ORCHESTRATOR_STARTED))
            for index, task in list(pending.items()):
                if task in done:
                    history.append(task.result())
                    del pending[index]

    def _call_orchestrator(self, handler: Callable, instance: Instance) -> dict:
        context = {
            "history": instance.history,
            "instanceId": instance.instance_id,
            "isReplaying": False,
            "input": instance.input,
            "parentInstanceId": None,
            "upperSchemaVersion": 1,
        }
        result = handler(json.dumps(context))
        return json.loads(result) if isinstance(result, str) else result

    def _execute(self, instance: Instance, scheduled: dict) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(self._complete(instance, scheduled))

    async def _complete(self, instance: Instance, scheduled: dict) -> dict:
        task_id = scheduled["EventId"]
        if scheduled["EventType"] == SUB_CREATED:
            child = Instance(scheduled["InstanceId"], scheduled["Name"], scheduled.get("Input"))
            self.instances[child.instance_id] = child
            await self._drive(child)
            if child.runtime_status == "Completed":
                return _event(SUB_COMPLETED, TaskScheduledId=task_id, Result=json.dumps(child.output))
            return _event(SUB_FAILED, TaskScheduledId=task_id, Reason=str(child.output), Details=str(child.output))
        entry = self._require(scheduled["Name"], "activityTrigger")
        payload = json.loads(scheduled["Input"]) if scheduled.get("Input") is not None else None
        async with self._activity_slots:
            try:
                if inspect.iscoroutinefunction(entry):
                    result = await entry(payload)
                else:
                    result = await asyncio.to_thread(entry, payload)
            except Exception as error:  # logged as the host logs a failed activity; the orchestrator decides
                logger.exception("activity %s failed", scheduled["Name"], extra={"instance_id": instance.instance_id})
                return _event(
                    TASK_FAILED,
                    TaskScheduledId=task_id,
                    Reason=f"{type(error).__name__}: {error}",
                    Details=traceback.format_exc(),
                )
        return _event(TASK_COMPLETED, TaskScheduledId=task_id, Result=json.dumps(result))

    def _require(self, name: str, trigger: str) -> Callable:
        found = self.functions.get(name)
        if found is None or found[0] != trigger:
            raise LookupError(f"no {trigger} function named {name!r}")
        return found[1]


def _leaf_actions(actions: list) -> Any:
    """Schema v1: a cumulative list of per-episode action lists; compound actions hold leaves."""
    for item in actions:
        if isinstance(item, list):
            yield from _leaf_actions(item)
        elif item.get("actionType") in (WHEN_ALL, WHEN_ANY):
            yield from _leaf_actions(item["compoundActions"])
        else:
            yield item


def _scheduling_event(index: int, action: dict, parent_id: str) -> dict:
    kind = action["actionType"]
    if kind == CALL_ACTIVITY:
        return _event(TASK_SCHEDULED, EventId=index, Name=action["functionName"], Input=action.get("input"))
    if kind == CALL_SUB_ORCHESTRATOR:
        return _event(
            SUB_CREATED,
            EventId=index,
            Name=action["functionName"],
            Input=action.get("input"),
            InstanceId=action.get("instanceId") or f"{parent_id}:{index:04d}",
        )
    raise RuntimeError(
        f"action type {kind} is not supported by this local engine (only activities and "
        "sub-orchestrations without retry options)"
    )


def _action_signature(action: dict) -> tuple:
    return action.get("actionType"), action.get("functionName"), action.get("input")


def _event_signature(event: dict) -> tuple:
    kind = CALL_ACTIVITY if event["EventType"] == TASK_SCHEDULED else CALL_SUB_ORCHESTRATOR
    return kind, event["Name"], event.get("Input")


def _event(event_type: int, **fields: Any) -> dict:
    return {
        "EventType": event_type,
        "EventId": fields.pop("EventId", -1),
        "IsPlayed": False,
        "Timestamp": _iso(datetime.now(UTC)),
        **fields,
    }


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
