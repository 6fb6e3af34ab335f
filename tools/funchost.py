"""A local host for the app's function folders (development only; production runs on the Azure
Functions host). It reads every ``*/function.json`` -- no hand-kept list -- and serves them the
way ``func start`` does:

* httpTrigger routes under host.json's routePrefix, with methods and authLevel, keys as Azure keeps
  them (``FunctionKeys`` in local.settings.json: the master key, host keys, keys per function; sent as
  ``x-functions-key`` or ``?code=``);
* timerTrigger on its NCRONTAB schedule (six fields, seconds first; %SETTING% resolved from the
  environment), and ``POST /admin/functions/{name}`` (master key) to fire one now;
* eventHubTrigger from the Batch simulator's hub, with the host's batching, retry policy and
  checkpoints (``tools.hubtrigger``);
* ``AzureWebJobs.<name>.Disabled=true`` in the settings turns a function off, as in Azure;
* Durable Functions: orchestrators and activities run by ``tools.durable`` through real replays,
  and a ``durableClient`` binding pointing the library's DurableOrchestrationClient at this
  host's endpoints (start, status, terminate). Orchestration state lives in memory.

    python -m tools.funchost [--port 7071] [--settings local.settings.json] [--retry-interval-scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import importlib
import inspect
import ipaddress
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import azure.functions as func
from aiohttp import web
from azure.durable_functions.models.utils import http_utils as durable_http
from azure.functions.timer import TimerRequest
from croniter import croniter

from shared.batch import close_batch
from shared.store import close_store
from tools import serving
from tools.durable import DurableEngine
from tools.hubtrigger import DEFAULT_MAX_EVENT_BATCH_SIZE, HubTrigger, RetryPolicy, hub_endpoint

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)

DURABLE_TRIGGERS = ("orchestrationTrigger", "activityTrigger")
_PLAIN_ROUTE = re.compile(
    r"[A-Za-z0-9_\-./]*(\{[A-Za-z_][A-Za-z0-9_]*\}[A-Za-z0-9_\-./]*)*(/\{\*[A-Za-z_][A-Za-z0-9_]*\})?"
)
_CATCH_ALL = re.compile(r"/\{\*([A-Za-z_][A-Za-z0-9_]*)\}$")
_SETTING = re.compile(r"%([A-Za-z0-9_]+)%")
WEBHOOKS = "/runtime/webhooks/durabletask"
RPC = "/durabletask"  # the host's loopback-only endpoint the Python durable client calls
INSTANCE_PLACEHOLDER = "INSTANCEID"


@dataclass(frozen=True)
class FunctionSpec:
    """One function folder as function.json declares it."""

    name: str
    bindings: tuple[dict, ...]
    entry: Callable[..., Any]
    retry: dict | None = None  # function.json's retry policy

    @property
    def trigger(self) -> dict:
        return next(b for b in self.bindings if b.get("direction") == "in" and b["type"].endswith("Trigger"))

    def binding(self, kind: str) -> dict | None:
        return next((b for b in self.bindings if b["type"] == kind), None)


@dataclass
class Keys:
    """Keys as the Functions host keeps them: the master key opens everything (authLevel admin and
    the admin API); a host key opens every authLevel=function function; a function key only its own."""

    master: str = ""
    host: dict[str, str] = field(default_factory=dict)
    functions: dict[str, dict[str, str]] = field(default_factory=dict)

    def allows(self, level: str, function: str | None, given: str | None) -> bool:
        if level == "anonymous":
            return True
        if not given:
            return False
        candidates = [self.master]
        if level != "admin":
            candidates += [*self.host.values(), *self.functions.get(function or "", {}).values()]
        return any(key and hmac.compare_digest(key.encode(), given.encode()) for key in candidates)

    @classmethod
    def from_settings(cls, section: dict) -> Keys:
        """``{"master": k, "host": {name: k}, "functions": {function: {name: k}}}``; a plain string
        beside the master key (the older ``{"default": k}``) is a host key."""
        host = {name: value for name, value in section.items() if isinstance(value, str) and name != "master"}
        return cls(
            master=section.get("master", ""),
            host={**host, **section.get("host", {})},
            functions={name: dict(keys) for name, keys in section.get("functions", {}).items()},
        )


@dataclass
class FunctionApp:
    root: Path
    host_config: dict
    functions: dict[str, FunctionSpec] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path = REPO) -> FunctionApp:
        host = json.loads((root / "host.json").read_text())
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))  # as the host does: the app root is importable
        app = cls(root, host)
        for definition in sorted(root.glob("*/function.json")):
            folder = definition.parent
            config = json.loads(definition.read_text())
            if config.get("disabled") or os.environ.get(f"AzureWebJobs.{folder.name}.Disabled", "").lower() in (
                "true",
                "1",
            ):
                continue
            script = config.get("scriptFile", "__init__.py")
            module = importlib.import_module(
                folder.name if script == "__init__.py" else f"{folder.name}.{Path(script).stem}"
            )
            entry = getattr(module, config.get("entryPoint", "main"))
            app.functions[folder.name] = FunctionSpec(
                folder.name, tuple(config["bindings"]), entry, config.get("retry")
            )
        return app

    @property
    def route_prefix(self) -> str:
        return self.host_config.get("extensions", {}).get("http", {}).get("routePrefix", "api").strip("/")

    @property
    def durable_config(self) -> dict:
        return self.host_config.get("extensions", {}).get("durableTask", {})

    def with_trigger(self, *kinds: str) -> list[FunctionSpec]:
        return [spec for spec in self.functions.values() if spec.trigger["type"] in kinds]

    def route_of(self, spec: FunctionSpec) -> str:
        route = spec.trigger.get("route", spec.name)
        if not _PLAIN_ROUTE.fullmatch(route):
            raise ValueError(f"{spec.name}: route {route!r} uses constraints this local host does not support")
        return "/" + "/".join(part for part in (self.route_prefix, route) if part)

    def paths_of(self, spec: FunctionSpec) -> list[str]:
        """aiohttp paths for a route; a trailing catch-all ``/{*rest}`` also matches nothing at all, as in Azure."""
        route = self.route_of(spec)
        catch_all = _CATCH_ALL.search(route)
        if catch_all is None:
            return [route]
        base = route[: catch_all.start()]
        return [base, f"{base}/{{{catch_all.group(1)}:[\\s\\S]*}}"]

    def durable_engine(self) -> DurableEngine:
        functions = {spec.name: (spec.trigger["type"], spec.entry) for spec in self.with_trigger(*DURABLE_TRIGGERS)}
        return DurableEngine(functions, int(self.durable_config.get("maxConcurrentActivityFunctions", 10)))


class FunctionError(Exception):
    """A function the host cannot run as configured: reported, not served; the others run on."""


def resolve_settings(text: str) -> str:
    """Binding expressions like %VALIDATION_SCHEDULE% come from app settings (the environment)."""

    def lookup(match: re.Match) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise FunctionError(
                f"'%{match.group(1)}%' does not resolve to a value (app setting {match.group(1)} is not set)"
            )
        return value

    return _SETTING.sub(lookup, text)


def resolve_trigger(spec: FunctionSpec) -> dict:
    """The trigger binding with every %SETTING% in it resolved, as the host does when it indexes."""
    return {name: resolve_settings(value) if isinstance(value, str) else value for name, value in spec.trigger.items()}


class LocalHost:
    """The running host: one aiohttp application, the durable engine and the timers."""

    def __init__(self, app: FunctionApp, keys: Keys, base_url: str, retry_interval_scale: float = 1.0):
        self.app, self.keys, self.base_url = app, keys, base_url
        self.retry_interval_scale = retry_interval_scale  # < 1 shortens retry waits (tests)
        self.hub_triggers: list[HubTrigger] = []
        self.engine = app.durable_engine()
        self.hub = self.app.durable_config.get("hubName", "TaskCountsHub")
        self._timers: list[asyncio.Task] = []
        self.errors: dict[str, str] = {}  # function -> why it is in error (not served)
        self.schedules: dict[str, str] = {}  # timer function -> its resolved NCRONTAB schedule

    def _in_error(self, spec: FunctionSpec, reason: str) -> None:
        """As the Functions host: one line naming the function and why; the function is not served."""
        self.errors[spec.name] = reason
        logger.error("The '%s' function is in error: %s", spec.name, reason, extra={"function": spec.name})

    def _servable(self, kinds: tuple[str, ...]) -> list[tuple[FunctionSpec, dict]]:
        """The functions with these triggers whose trigger binding resolves; the rest are put in error."""
        servable = []
        for spec in self.app.with_trigger(*kinds):
            if spec.trigger["type"] == "eventHubTrigger" and not self._hub_connected(spec):
                continue
            try:
                servable.append((spec, resolve_trigger(spec)))
            except FunctionError as error:
                self._in_error(spec, str(error))
        return servable

    # ---- wiring -----------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        web_app = web.Application(client_max_size=8 * 1024 * 1024)  # functions judge body size themselves
        for spec, trigger in self._servable(("httpTrigger",)):
            handler = self._http_handler(spec)
            for method in trigger.get("methods", ["get", "post"]):
                for path in self.app.paths_of(spec):
                    web_app.router.add_route(method.upper(), path, handler)
        web_app.router.add_post("/admin/functions/{name}", self._admin_invoke)
        for prefix, guard in ((WEBHOOKS, self._require_master), (RPC, _require_loopback)):
            web_app.router.add_post(prefix + "/orchestrators/{name}", self._durable(guard, self._start))
            web_app.router.add_post(prefix + "/orchestrators/{name}/{instance}", self._durable(guard, self._start))
            web_app.router.add_get(prefix + "/instances/{instance}", self._durable(guard, self._status))
            web_app.router.add_post(prefix + "/instances/{instance}/terminate", self._durable(guard, self._terminate))
        return web_app

    def client_binding(self) -> str:
        """The durableClient binding's value: where DurableOrchestrationClient sends its calls."""
        hooks, code = f"{self.base_url}{WEBHOOKS}", quote(self.keys.master)
        query = f"taskHub={self.hub}&connection=Storage&code={code}"
        instance = f"{hooks}/instances/{INSTANCE_PLACEHOLDER}"
        return json.dumps(
            {
                "taskHubName": self.hub,
                "creationUrls": {
                    "createNewInstancePostUri": f"{hooks}/orchestrators/{{functionName}}[/{{instanceId}}]?code={code}",
                    "createAndWaitOnNewInstancePostUri": f"{hooks}/orchestrators/{{functionName}}[/{{instanceId}}]"
                    f"?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&code={code}",
                },
                "managementUrls": {
                    "id": INSTANCE_PLACEHOLDER,
                    "statusQueryGetUri": f"{instance}?{query}",
                    "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
                    "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
                    "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
                    "purgeHistoryDeleteUri": f"{instance}?{query}",
                    "restartPostUri": f"{instance}/restart?{query}",
                    "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
                    "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
                },
                "baseUrl": hooks,
                "requiredQueryStringParameters": f"code={code}",
                "rpcBaseUrl": f"{self.base_url}{RPC}/",
                "httpBaseUrl": "",
                "maxGrpcMessageSizeInBytes": 0,
                "grpcHttpClientTimeout": "00:01:40",
            }
        )

    async def invoke(self, spec: FunctionSpec, trigger_value: Any) -> Any:
        """Call a function with its trigger and the input bindings this host provides."""
        kwargs = {spec.trigger["name"]: trigger_value}
        for binding in spec.bindings:
            if binding is spec.trigger or binding.get("direction") != "in":
                continue
            if binding["type"] != "durableClient":
                raise RuntimeError(f"{spec.name}: binding type {binding['type']!r} is not supported by this local host")
            kwargs[binding["name"]] = self.client_binding()
        if inspect.iscoroutinefunction(spec.entry):
            return await spec.entry(**kwargs)
        return await asyncio.to_thread(spec.entry, **kwargs)  # the real host runs sync functions on threads

    # ---- HTTP functions and the admin endpoint ------------------------------------------------

    def _http_handler(self, spec: FunctionSpec):
        level = spec.trigger.get("authLevel", "function").lower()

        async def handle(request: web.Request) -> web.Response:
            if not self.keys.allows(level, spec.name, _key_of(request)):
                return web.Response(status=401)
            http_request = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                params=dict(request.query),  # as in Azure: ?code= included
                route_params=dict(request.match_info),
                body=await request.read(),
            )
            result = await self.invoke(spec, http_request)
            return web.Response(
                body=result.get_body(),
                status=result.status_code,
                headers={k: v for k, v in result.headers.items() if k.lower() != "content-length"},
            )

        return handle

    async def _admin_invoke(self, request: web.Request) -> web.Response:
        """The host's admin API: run a non-HTTP function now (timers: as if its schedule fired)."""
        if not self.keys.allows("admin", None, _key_of(request)):
            return web.Response(status=401)
        spec = self.app.functions.get(request.match_info["name"])
        if spec is None or spec.trigger["type"] != "timerTrigger":
            return web.json_response({"error": "no timer function of that name"}, status=404)
        if spec.name in self.errors:
            return web.json_response({"error": f"the function is in error: {self.errors[spec.name]}"}, status=404)
        asyncio.get_running_loop().create_task(self._fire(spec, past_due=False))
        return web.Response(status=202)

    # ---- timers -------------------------------------------------------------------------------

    def start_triggers(self) -> None:
        """Timers on their schedules and Event Hubs readers (HTTP functions need nothing started). A
        function whose binding names an unset %SETTING% or an invalid schedule is in error and does
        not run; every other one does, as on the Functions host."""
        for spec, trigger in self._servable(("timerTrigger",)):
            schedule = trigger["schedule"]
            if not croniter.is_valid(schedule, second_at_beginning=True) or len(schedule.split()) != 6:
                self._in_error(spec, f"the schedule {schedule!r} is not a six-field NCRONTAB expression")
                continue
            self.schedules[spec.name] = schedule
        hub_triggers = [self._hub_trigger(spec, trigger) for spec, trigger in self._servable(("eventHubTrigger",))]
        loop = asyncio.get_running_loop()
        for spec in self.app.with_trigger("timerTrigger"):
            if spec.name in self.schedules:
                self._timers.append(loop.create_task(self._run_timer(spec, self.schedules[spec.name])))
        for reader in hub_triggers:
            self.hub_triggers.append(reader)
            self._timers.append(loop.create_task(reader.run()))

    @staticmethod
    def _hub_connected(spec: FunctionSpec) -> bool:
        if os.environ.get(spec.trigger["connection"]):
            return True
        logger.warning("%s: no %s connection string is set; not reading a hub", spec.name, spec.trigger["connection"])
        return False

    def _hub_trigger(self, spec: FunctionSpec, binding: dict) -> HubTrigger:
        if binding.get("cardinality", "one") != "many":
            raise ValueError(f"{spec.name}: this local host runs eventHubTrigger with cardinality many only")
        connection = os.environ[binding["connection"]]
        settings = self.app.host_config.get("extensions", {}).get("eventHubs", {})

        async def invoke(events: list) -> None:
            await self.invoke(spec, events)

        return HubTrigger(
            spec.name,
            hub_endpoint(connection),
            binding["eventHubName"],
            binding.get("consumerGroup", "$Default"),
            int(settings.get("maxEventBatchSize", DEFAULT_MAX_EVENT_BATCH_SIZE)),
            RetryPolicy.from_function_json(spec.retry, self.retry_interval_scale),
            invoke,
        )

    async def _run_timer(self, spec: FunctionSpec, schedule: str) -> None:
        times = croniter(schedule, datetime.now(UTC), second_at_beginning=True)
        while True:
            due = times.get_next(datetime)
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await self._fire(spec, past_due=(datetime.now(UTC) - due).total_seconds() > 1)

    async def _fire(self, spec: FunctionSpec, past_due: bool) -> None:
        try:
            await self.invoke(spec, TimerRequest(past_due=past_due))
        except Exception:
            logger.exception("timer function failed", extra={"function": spec.name})

    # ---- durable endpoints --------------------------------------------------------------------

    def _durable(self, guard, handler):
        async def handle(request: web.Request) -> web.Response:
            refused = guard(request)
            return refused if refused is not None else await handler(request)

        return handle

    def _require_master(self, request: web.Request) -> web.Response | None:
        return None if self.keys.allows("admin", None, _key_of(request)) else web.Response(status=401)

    async def _start(self, request: web.Request) -> web.Response:
        body = await request.text()
        try:
            # DurableOrchestrationClient posts the input's JSON text as a JSON string; a plain
            # HTTP caller posts the input itself.
            value = json.loads(body) if body else None
            payload_json = None if value is None else value if isinstance(value, str) else json.dumps(value)
            instance = self.engine.start(request.match_info["name"], payload_json, request.match_info.get("instance"))
        except LookupError as error:
            return web.json_response({"ExceptionMessage": str(error)}, status=400)
        except json.JSONDecodeError:
            return web.json_response({"ExceptionMessage": "the request body is not JSON"}, status=400)
        except ValueError as error:
            return web.json_response({"ExceptionMessage": str(error)}, status=409)
        links = json.loads(self.client_binding())["managementUrls"]
        body = {key: value.replace(INSTANCE_PLACEHOLDER, instance.instance_id) for key, value in links.items()}
        return web.json_response(body, status=202, headers={"Location": body["statusQueryGetUri"]})

    async def _status(self, request: web.Request) -> web.Response:
        instance = self.engine.instances.get(request.match_info["instance"])
        if instance is None:
            return web.json_response({"error": "instance not found"}, status=404)
        status = {"Completed": 200, "Failed": 400, "Terminated": 400}.get(instance.runtime_status, 202)
        return web.json_response(instance.status_json(request.query.get("showHistory") == "true"), status=status)

    async def _terminate(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance"]
        if instance_id not in self.engine.instances:
            return web.Response(status=404)
        terminated = self.engine.terminate(instance_id, request.query.get("reason", ""))
        return web.Response(status=202 if terminated else 410)

    async def stop_triggers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        self._timers.clear()
        self.hub_triggers.clear()

    async def close(self) -> None:
        await self.stop_triggers()
        await self.engine.close()
        await durable_http._close_session()  # the durable client's process-wide aiohttp session


def _key_of(request: web.Request) -> str | None:
    return request.headers.get("x-functions-key") or request.query.get("code")


def _require_loopback(request: web.Request) -> web.Response | None:
    try:
        local = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        local = False
    return None if local else web.Response(status=403)


def load_local_settings(path: Path) -> tuple[dict[str, str], Keys, int | None]:
    """Values go into the environment (as the host does); FunctionKeys hold the local keys."""
    settings = json.loads(path.read_text())
    keys = Keys.from_settings(settings.get("FunctionKeys", {}))
    port = settings.get("Host", {}).get("LocalHttpPort")
    return {k: str(v) for k, v in settings.get("Values", {}).items()}, keys, port


def banner(host: LocalHost) -> str:
    lines = ["", "Functions:", ""]
    for spec in host.app.functions.values():
        kind = spec.trigger["type"]
        if spec.name in host.errors:
            lines.append(f"        {spec.name}: Error: {host.errors[spec.name]}")
        elif kind == "httpTrigger":
            methods = ",".join(m.upper() for m in spec.trigger.get("methods", ["get", "post"]))
            lines.append(f"        {spec.name}: [{methods}] {host.base_url}{host.app.route_of(spec)}")
        elif kind == "timerTrigger":
            lines.append(
                f"        {spec.name}: timerTrigger ({host.schedules[spec.name]}; "
                f"run now: POST {host.base_url}/admin/functions/{spec.name} with the master key)"
            )
        elif kind == "eventHubTrigger":
            reading = next((t for t in host.hub_triggers if t.name == spec.name), None)
            lines.append(
                f"        {spec.name}: eventHubTrigger ("
                + (
                    f"hub {reading.hub} at {reading.endpoint}, consumer group {reading.group})"
                    if reading
                    else f"not reading: {spec.trigger['connection']} is not set)"
                )
            )
        else:
            lines.append(f"        {spec.name}: {kind}")
    lines += [
        "",
        "The API's routes check their own access (ACCESS_MODE and ACCESS_*_KEYS in the settings).",
        f"Master key (the admin API, x-functions-key header): {host.keys.master or '(none)'}",
        "Durable Functions state is kept in memory by this local host: a restart forgets running orchestrations.",
        "",
    ]
    return "\n".join(lines)


async def serve(
    app: FunctionApp, keys: Keys, host: str, port: int, triggers: bool = False, retry_interval_scale: float = 1.0
) -> tuple[web.AppRunner, LocalHost]:
    local = LocalHost(app, keys, f"http://{host}:{port}", retry_interval_scale)
    runner = await serving.start(local.web_app(), host, port)
    if triggers:
        local.start_triggers()
    return runner, local


async def stop(runner: web.AppRunner, local: LocalHost) -> None:
    await local.close()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", type=Path, default=REPO / "local.settings.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument(
        "--retry-interval-scale",
        type=float,
        default=1.0,
        help="multiply function.json retry intervals (tests shorten them)",
    )
    args = parser.parse_args(argv)
    if not args.settings.exists():
        parser.error(f"{args.settings} not found: copy local.settings.example.json to local.settings.json")
    values, keys, settings_port = load_local_settings(args.settings)
    os.environ.update(values)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # azure-core logs every request's headers at INFO: the app's own lines would drown (and the host slow down)
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    port = args.port or settings_port or 7071
    app = FunctionApp.load()

    local_host: list[LocalHost] = []

    async def begin():
        runner, local = await serve(
            app, keys, args.host, port, triggers=True, retry_interval_scale=args.retry_interval_scale
        )
        local_host.append(local)

        async def shut_down() -> None:
            await stop(runner, local)
            await close_store()
            await close_batch()

        return shut_down

    serving.run_until_interrupted(begin, lambda: banner(local_host[0]))


if __name__ == "__main__":
    main()
