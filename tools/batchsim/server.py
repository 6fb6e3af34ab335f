"""The simulator's HTTP surface: Batch REST (SharedKey-verified) and /control for tests and demos."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import time
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from tools import serving
from tools.batchsim import auth
from tools.batchsim.hub import EventHub, ExportDelay, LogFaults, pump
from tools.batchsim.model import BatchAccount, SimError
from tools.batchsim.odata import creation_range, parse_filter
from tools.batchsim.publisher import Faults, publish
from tools.batchsim.wire import error_body, iso

JSON = "application/json;odata=minimalmetadata"
DEFAULT_ACCOUNT = "simaccount"
DEFAULT_KEY = "dGFza2NvdW50cy1zaW11bGF0b3Ita2V5LW5vdC1hLXNlY3JldA=="  # public, local only
MAX_RESULTS = 1000

TASK_FIELDS = {
    "id": lambda t: t.id,
    "state": lambda t: t.state,
    "executionInfo/result": lambda t: t.result,
    "executionInfo/exitCode": lambda t: t.exit_code,
    "stateTransitionTime": lambda t: t.state_ticks,  # compared with DateTime'...' literals as ticks
    "creationTime": lambda t: t.creation_ticks,
}
JOB_FIELDS = {"id": lambda j: j.id, "state": lambda j: j.state}

ACCOUNT = web.AppKey("account", BatchAccount)
HUBS = web.AppKey("hubs", dict)
CALLS = web.AppKey("calls", dict)  # Batch REST route -> requests answered (GET /control/calls)
FAULTS = web.AppKey("faults", dict)
HOLDS = web.AppKey("holds", dict)  # job key -> ListingHold (POST /control/holds)


class ListingHold:
    """A gate a test controls: the job's first ``after`` List Tasks requests are answered, later ones
    wait until the hold is released. Lets a test act while a listing is certainly in progress,
    however fast the machine lists."""

    def __init__(self, after: int):
        self.after, self.passed, self.waiting = after, 0, 0
        self.released = asyncio.Event()

    async def enter(self) -> None:
        if self.passed < self.after or self.released.is_set():
            self.passed += 1
            return
        self.waiting += 1
        try:
            await self.released.wait()
        finally:
            self.waiting -= 1
        self.passed += 1

    def to_json(self) -> dict:
        return {"after": self.after, "passed": self.passed, "waiting": self.waiting, "released": self.released.is_set()}


def build_app(account: BatchAccount, account_name: str = DEFAULT_ACCOUNT, key: str = DEFAULT_KEY) -> web.Application:
    @web.middleware
    async def errors_and_auth(request: web.Request, handler):
        try:
            if not request.path.startswith(("/control/", "/eventhubs/")):
                raw_path, _, raw_query = request.raw_path.partition("?")
                reason = auth.verify(account_name, key, request.method, raw_path, raw_query, request.headers)
                if reason is not None:
                    raise SimError(
                        403,
                        "AuthenticationFailed",
                        "Server failed to authenticate the request.",
                        {"AuthenticationErrorDetail": reason},
                    )
                _refuse_over_the_rate(request.app[FAULTS])
                _inject_fault(request.app[FAULTS])
                route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
                calls = request.app[CALLS]
                calls[route] = calls.get(route, 0) + 1
                if request.app[FAULTS]["latency"]:  # a remote Batch's round trip, without using CPU
                    await asyncio.sleep(request.app[FAULTS]["latency"])
            return await handler(request)
        except SimError as error:
            retry_after = error.retry_after if isinstance(error, Throttled) else request.app[FAULTS]["retryAfter"]
            headers = {"Retry-After": str(retry_after)} if error.status in (429, 503) else {}
            return web.json_response(
                error_body(error.code, error.message, error.values), status=error.status, headers=headers
            )

    app = web.Application(middlewares=[errors_and_auth])
    app[ACCOUNT] = account
    app[HUBS] = {}  # hub name -> EventHub, made on first use
    app[CALLS] = {}
    app[HOLDS] = {}
    app[FAULTS] = {
        "throttle": 0.0,
        "serverError": 0.0,
        "retryAfter": 0,
        "latency": default_latency(),
        "injected": 0,
        "rng": random.Random(0),
        "rateLimit": None,
        "throttled": 0,
    }
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{jobId}", get_job)
    app.router.add_get("/jobs/{jobId}/tasks", list_tasks)
    app.router.add_get("/jobs/{jobId}/taskcounts", task_counts)
    app.router.add_post("/control/jobs", control_create_job)
    app.router.add_delete("/control/jobs/{jobId}", control_delete_job)
    app.router.add_post("/control/jobs/{jobId}/tasks", control_add_tasks)
    app.router.add_post("/control/jobs/{jobId}/step", control_step)
    app.router.add_post("/control/jobs/{jobId}/finish", control_finish)
    app.router.add_post("/control/jobs/{jobId}/complete", control_complete_job)
    app.router.add_post("/control/advance", control_advance)
    app.router.add_get("/control/taskcounts", control_task_counts)
    app.router.add_post("/control/jobs/{jobId}/tasks/{taskId}/{action}", control_task_action)
    app.router.add_post("/control/publish", control_publish)
    app.router.add_post("/control/faults", control_faults)
    app.router.add_post("/control/servicelog", control_service_log)
    app.router.add_get("/control/calls", control_calls)
    app.router.add_post("/control/holds", control_hold)
    app.router.add_get("/control/holds/{jobId}", control_hold_state)
    app.router.add_delete("/control/holds/{jobId}", control_release)
    app.router.add_get("/eventhubs/{hub}/partitions", hub_partitions)
    app.router.add_get("/eventhubs/{hub}/partitions/{partition}/messages", hub_messages)
    app.router.add_get("/eventhubs/{hub}/consumergroups/{group}/checkpoints/{partition}", hub_checkpoint)
    app.router.add_put("/eventhubs/{hub}/consumergroups/{group}/checkpoints/{partition}", hub_checkpoint)
    return app


class Throttled(SimError):
    """429 with the wait Batch's front end asks for."""

    def __init__(self, retry_after: int):
        super().__init__(429, "TooManyRequests", "The server is throttling requests; retry after the given time.")
        self.retry_after = retry_after


class RateLimit:
    """An account's request rate: a token bucket of ``per_second`` tokens a second, holding one
    second's worth (one token at least); a request finding no token is refused with the whole
    seconds until one comes."""

    def __init__(self, per_second: float, clock=time.monotonic):
        self.per_second, self._clock = per_second, clock
        self._capacity = max(1.0, per_second)
        self._tokens, self._at = self._capacity, clock()

    def retry_after(self) -> int | None:
        """None: the request may go on (its token taken); else the seconds to ask the client to wait."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return max(1, math.ceil((1 - self._tokens) / self.per_second))


def _refuse_over_the_rate(faults: dict) -> None:
    limit: RateLimit | None = faults["rateLimit"]
    wait = None if limit is None else limit.retry_after()
    if wait is not None:
        faults["throttled"] += 1
        raise Throttled(wait)


def default_latency() -> float:
    """Seconds every Batch call is answered late unless /control/faults says otherwise:
    BATCHSIM_LATENCY_MS, so a whole test run can be made to meet a slower Batch."""
    return int(os.environ.get("BATCHSIM_LATENCY_MS", "0")) / 1000


def _inject_fault(faults: dict) -> None:
    """Batch's own failure modes, on request: throttling (429) and server errors (503)."""
    roll = faults["rng"].random()
    if roll < faults["throttle"]:
        faults["injected"] += 1
        raise SimError(429, "TooManyRequests", "The server is throttling requests; retry after the given time.")
    if roll < faults["throttle"] + faults["serverError"]:
        faults["injected"] += 1
        raise SimError(503, "ServerBusy", "The server is currently unable to receive requests. Please retry.")


async def control_faults(request: web.Request) -> web.Response:
    """{"throttle": 0.2, "serverError": 0.1, "retryAfter": 1, "latency": 0.3, "seed": 1, "rateLimit": 20}:
    fail that fraction of Batch requests, asking for a wait of retryAfter seconds; answer every Batch
    request ``latency`` seconds late; refuse requests past ``rateLimit`` a second with 429 and the
    Retry-After a token needs (0 or null: no limit). Answers how many faults were injected and how
    many requests the rate limit refused so far."""
    body = await _json_body(request)
    faults = request.app[FAULTS]
    for name in ("throttle", "serverError", "retryAfter", "latency"):
        if name in body:
            faults[name] = float(body[name]) if name != "retryAfter" else int(body[name])
    if "seed" in body:
        faults["rng"] = random.Random(body["seed"])
    if "rateLimit" in body:
        faults["rateLimit"] = RateLimit(float(body["rateLimit"])) if body["rateLimit"] else None
    limit = faults["rateLimit"]
    return _reply(
        {
            "throttle": faults["throttle"],
            "serverError": faults["serverError"],
            "latency": faults["latency"],
            "rateLimit": limit.per_second if limit else None,
            "injected": faults["injected"],
            "throttled": faults["throttled"],
        }
    )


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, headers={"Content-Type": JSON}
    )


def _max_results(request: web.Request) -> int:
    raw = request.query.get("maxresults", str(MAX_RESULTS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_RESULTS:
        raise SimError(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            {
                "QueryParameterName": "maxresults",
                "QueryParameterValue": raw,
                "Reason": f"must be between 1 and {MAX_RESULTS}",
            },
        )
    return int(raw)


def _selected(request: web.Request) -> list[str] | None:
    """The properties ``$select`` asks for; None: all of them."""
    return [name for name in request.query.get("$select", "").split(",") if name] or None


def _page(request: web.Request, keys, lookup, fields, render, path: str, position=lambda key: key) -> web.Response:
    """One page in the order of ``keys``, each item as ``render(item, selected properties or None)``;
    the nextLink carries every parameter (the SDK only follows it) and, as ``$skiptoken``, the
    ``position`` of the last key listed."""
    limit = _max_results(request)
    filter_text = request.query.get("$filter")
    predicate = parse_filter(filter_text, fields) if filter_text else None
    select = _selected(request)
    items, last_key, more = [], None, False
    for key in keys:
        item = lookup(key)
        if item is None or (predicate is not None and not predicate(item)):
            continue
        if len(items) == limit:
            more = True
            break
        items.append(render(item, select))
        last_key = key
    body: dict[str, Any] = {"odata.metadata": f"{_base(request)}/$metadata#{path.rsplit('/', 1)[-1]}", "value": items}
    if more:
        params = {"api-version": request.query.get("api-version", ""), "maxresults": str(limit)}
        if filter_text:
            params["$filter"] = filter_text
        if select is not None:
            params["$select"] = ",".join(select)
        params["$skiptoken"] = position(last_key)
        body["odata.nextLink"] = f"{_base(request)}{path}?{urlencode(params, quote_via=quote, safe='')}"
    return _reply(body)


async def list_jobs(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    after = request.query.get("$skiptoken")
    keys = [key for key in sorted(account.jobs) if after is None or key > after]
    return _page(
        request, keys, account.jobs.get, JOB_FIELDS, lambda job, select: _job_json(request, job, select), "/jobs"
    )


async def get_job(request: web.Request) -> web.Response:
    return _reply(_job_json(request, request.app[ACCOUNT].job(request.match_info["jobId"]), _selected(request)))


def _job_json(request: web.Request, job, select: list[str] | None = None) -> dict:
    body = {
        "id": job.id,
        "url": f"{_base(request)}/jobs/{job.id}",
        "state": job.state,
        "creationTime": iso(job.creation_ticks),
        "stateTransitionTime": iso(job.creation_ticks),
        "poolInfo": {"poolId": "simpool"},
    }
    return body if select is None else {name: value for name, value in body.items() if name in select}


async def list_tasks(request: web.Request) -> web.Response:
    job = request.app[ACCOUNT].job(request.match_info["jobId"])
    hold = request.app[HOLDS].get(job.id.lower())
    if hold is not None:
        await hold.enter()
    job_url = f"{_base(request)}/jobs/{job.id}"
    after = request.query.get("$skiptoken")
    bounds = creation_range(request.query.get("$filter", ""))
    if bounds is None:
        keys, position = job.keys_after(after), (lambda key: key)
    else:  # a creation-time slice pages through the creation index, as an indexed listing would
        keys, position = job.keys_created_between(*bounds, after), job.creation_position
    return _page(
        request,
        keys,
        job.tasks.get,
        TASK_FIELDS,
        lambda task, select: task.to_json(job_url, select),
        f"/jobs/{quote(job.id)}/tasks",
        position,
    )


async def task_counts(request: web.Request) -> web.Response:
    return _reply(request.app[ACCOUNT].task_counts(request.match_info["jobId"]))


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise SimError(400, "InvalidRequestBody", "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise SimError(400, "InvalidRequestBody", "The request body must be a JSON object.")
    return body


async def control_create_job(request: web.Request) -> web.Response:
    """{"id": "job-1", "tasks": 1000, "requiredSlots": 1, "publish": true}"""
    body = await _json_body(request)
    account = request.app[ACCOUNT]
    job = account.create_job(str(body.get("id", "")))
    count = int(body.get("tasks", 0))
    account.add_tasks(
        job.id,
        [f"task-{n:07d}" for n in range(count)],
        int(body.get("requiredSlots", 1)),
        publish=bool(body.get("publish", True)),
    )
    return _reply({"id": job.id, "tasks": count}, status=201)


async def control_delete_job(request: web.Request) -> web.Response:
    request.app[ACCOUNT].delete_job(request.match_info["jobId"])
    return web.Response(status=204)


async def control_add_tasks(request: web.Request) -> web.Response:
    """{"ids": ["a", "b"], "requiredSlots": 2, "publish": true}"""
    body = await _json_body(request)
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise SimError(400, "MissingRequiredProperty", "ids (a list of task ids) is required.")
    request.app[ACCOUNT].add_tasks(
        request.match_info["jobId"],
        [str(i) for i in ids],
        int(body.get("requiredSlots", 1)),
        publish=bool(body.get("publish", True)),
    )
    return _reply({"added": len(ids)}, status=201)


async def control_step(request: web.Request) -> web.Response:
    """{"moves": 500, "seed": 1, "publish": true, "deletes": true}: advance random tasks along their lifecycle."""
    body = await _json_body(request)
    made = request.app[ACCOUNT].step(
        request.match_info["jobId"],
        random.Random(body.get("seed")),
        int(body.get("moves", 1)),
        publish=bool(body.get("publish", True)),
        deletes=bool(body.get("deletes", True)),
    )
    return _reply({"moves": made})


async def control_finish(request: web.Request) -> web.Response:
    """{"seed": 1, "publish": true}: run every unfinished task to completion."""
    body = await _json_body(request)
    moved = request.app[ACCOUNT].finish(
        request.match_info["jobId"], random.Random(body.get("seed")), publish=bool(body.get("publish", True))
    )
    return _reply({"moves": moved})


async def control_advance(request: web.Request) -> web.Response:
    """{"jobs": ["a", "b"], "publish": false}: move each job one step forward (a running task completes,
    an active one starts); answers each job's completed count after it, which never falls."""
    body = await _json_body(request)
    jobs = body.get("jobs")
    if not isinstance(jobs, list) or not all(isinstance(job, str) for job in jobs):
        raise SimError(400, "MissingRequiredProperty", "jobs (a list of job ids) is required.")
    account, publish = request.app[ACCOUNT], bool(body.get("publish", True))
    return _reply({"completed": {job: account.advance(job, publish=publish) for job in jobs}})


async def control_task_counts(request: web.Request) -> web.Response:
    """Every job's true task counts by its id, uncounted and unthrottled (for benchmarks' checks)."""
    account = request.app[ACCOUNT]
    return _reply({job.id: account.task_counts(job.id)["taskCounts"] for job in account.jobs.values()})


async def control_complete_job(request: web.Request) -> web.Response:
    """Mark the job completed (as Batch does when all its tasks are done and onAllTasksComplete says so)."""
    request.app[ACCOUNT].job(request.match_info["jobId"]).state = "completed"
    return web.Response(status=204)


_ACTIONS = {"start", "complete", "retry", "requeue", "reactivate", "terminate", "delete"}


async def control_task_action(request: web.Request) -> web.Response:
    """start | complete {"exitCode": n} | retry | requeue | reactivate | terminate | delete;
    {"publish": false} loses the event."""
    action = request.match_info["action"]
    if action not in _ACTIONS:
        raise SimError(404, "ResourceNotFound", f"Unknown action {action!r}; one of {sorted(_ACTIONS)}.")
    body = await _json_body(request)
    account, job_id, task_id = request.app[ACCOUNT], request.match_info["jobId"], request.match_info["taskId"]
    publish_event = bool(body.get("publish", True))
    if action == "complete":
        account.complete(job_id, task_id, int(body.get("exitCode", 0)), publish=publish_event)
    elif action == "delete":
        account.delete_task(job_id, task_id, publish=publish_event)
    else:
        getattr(account, action)(job_id, task_id, publish=publish_event)
    return web.Response(status=204)


async def control_publish(request: web.Request) -> web.Response:
    """Publish every pending event to {"url"} in Event Grid batches with faults; returns a report."""
    body = await _json_body(request)
    if not isinstance(body.get("url"), str):
        raise SimError(400, "MissingRequiredProperty", "url (the webhook to deliver to) is required.")
    faults = Faults(
        drop=float(body.get("drop", 0)),
        duplicate=float(body.get("duplicate", 0)),
        reorder=bool(body.get("reorder", False)),
        delay_ms=int(body.get("delayMs", 0)),
    )
    report = await publish(
        request.app[ACCOUNT].take_outbox(),
        body["url"],
        headers=body.get("headers"),
        max_events_per_batch=int(body.get("maxEventsPerBatch", 1000)),
        schema=body.get("schema", "eventgrid"),
        faults=faults,
        concurrency=int(body.get("concurrency", 4)),
        seed=int(body.get("seed", 0)),
    )
    return _reply(report.to_json())


async def control_calls(request: web.Request) -> web.Response:
    """How many requests each Batch REST route answered: what a client's work cost."""
    return _reply(request.app[CALLS])


async def control_hold(request: web.Request) -> web.Response:
    """{"jobId": "j", "after": 3}: answer the job's next 3 List Tasks requests, then hold the rest
    until DELETE /control/holds/{jobId}; GET /control/holds/{jobId} says how many wait."""
    body = await _json_body(request)
    job_id, after = body.get("jobId"), body.get("after", 0)
    if not isinstance(job_id, str) or not isinstance(after, int) or after < 0:
        raise SimError(400, "InvalidRequestBody", "jobId (a string) and after (a count >= 0) are required.")
    holds = request.app[HOLDS]
    if job_id.lower() in holds:
        holds.pop(job_id.lower()).released.set()
    hold = holds[job_id.lower()] = ListingHold(after)
    return _reply(hold.to_json(), status=201)


def _hold_of(request: web.Request) -> ListingHold:
    hold = request.app[HOLDS].get(request.match_info["jobId"].lower())
    if hold is None:
        raise SimError(404, "ResourceNotFound", f"No hold on job {request.match_info['jobId']!r}.")
    return hold


async def control_hold_state(request: web.Request) -> web.Response:
    return _reply(_hold_of(request).to_json())


async def control_release(request: web.Request) -> web.Response:
    """Release every List Tasks request the hold keeps waiting, and drop the hold."""
    hold = _hold_of(request)
    request.app[HOLDS].pop(request.match_info["jobId"].lower())
    hold.released.set()
    return _reply(hold.to_json())


async def control_service_log(request: web.Request) -> web.Response:
    """Write every pending service-log record to the hub {"hub": "batch-service-log"}, {"recordsPerMessage": 50,
    "drop": 0, "duplicate": 0, "reorder": false, "noise": 0.1, "seed": 0, "exportDelay": {"median": 60,
    "tail": 180}}; returns a report. With exportDelay each message reaches the hub that late (seconds)."""
    body = await _json_body(request)
    delay = body.get("exportDelay")
    try:
        export_delay = None if not delay else ExportDelay(float(delay["median"]), float(delay["tail"]))
    except (TypeError, KeyError, ValueError) as error:
        raise SimError(
            400, "InvalidRequestBody", f"exportDelay needs a median and a tail in seconds: {error}"
        ) from None
    faults = LogFaults(
        drop=float(body.get("drop", 0)),
        duplicate=float(body.get("duplicate", 0)),
        reorder=bool(body.get("reorder", False)),
        noise=float(body.get("noise", 0.1)),
        export_delay=export_delay,
    )
    report = pump(
        request.app[ACCOUNT].take_log_outbox(),
        _hub(request, body.get("hub", "batch-service-log")),
        faults,
        int(body.get("recordsPerMessage", 50)),
        int(body.get("seed", 0)),
    )
    return _reply(report.to_json())


def _hub(request: web.Request, name: str | None = None) -> EventHub:
    hubs = request.app[HUBS]
    name = (name or request.match_info["hub"]).lower()
    if name not in hubs:
        hubs[name] = EventHub()
    return hubs[name]


def _partition(request: web.Request, hub: EventHub) -> int:
    raw = request.match_info["partition"]
    if not raw.isdigit() or int(raw) >= len(hub.partitions):
        raise SimError(404, "PartitionNotFound", f"No partition {raw!r}; the hub has {len(hub.partitions)}.")
    return int(raw)


async def hub_partitions(request: web.Request) -> web.Response:
    return _reply({"partitionIds": [str(n) for n in range(len(_hub(request).partitions))]})


async def hub_messages(request: web.Request) -> web.Response:
    hub = _hub(request)
    query = request.query
    messages = await hub.read(
        _partition(request, hub),
        int(query.get("from", "0")),
        int(query.get("max", "100")),
        int(query.get("waitMs", "0")) / 1000,
    )
    return _reply({"messages": messages})


async def hub_checkpoint(request: web.Request) -> web.Response:
    hub = _hub(request)
    key = (request.match_info["group"].lower(), _partition(request, hub))
    if request.method == "PUT":
        hub.checkpoints[key] = int((await _json_body(request))["sequenceNumber"])
    return _reply({"sequenceNumber": hub.checkpoints.get(key, -1)})


async def serve(
    account: BatchAccount, host: str, port: int, account_name: str = DEFAULT_ACCOUNT, key: str = DEFAULT_KEY
) -> web.AppRunner:
    return await serving.start(build_app(account, account_name, key), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Azure Batch REST simulator for taskcounts (local only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--account", default=DEFAULT_ACCOUNT)
    parser.add_argument("--key", default=DEFAULT_KEY)
    parser.add_argument(
        "--service-log",
        action="store_true",
        help="keep Batch's service log of every change, for POST /control/servicelog",
    )
    args = parser.parse_args(argv)

    async def begin():
        return (
            await serve(BatchAccount(keep_service_log=args.service_log), args.host, args.port, args.account, args.key)
        ).cleanup

    serving.run_until_interrupted(
        begin, lambda: f"Batch simulator: http://{args.host}:{args.port}  account={args.account}  key={args.key}"
    )
