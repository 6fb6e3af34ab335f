"""A local host for the app's function folders (development only; production runs on the
Azure Functions host). It reads every ``*/function.json`` -- no hand-kept list -- and serves
httpTrigger functions under host.json's routePrefix with their methods and authLevel, the way
``func start`` does.

    python -m tools.funchost [--port 7071] [--settings local.settings.json]
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import importlib
import inspect
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import azure.functions as func
from aiohttp import web

from shared.store import close_store

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)

_PLAIN_ROUTE = re.compile(r"[A-Za-z0-9_\-./]*(\{[A-Za-z_][A-Za-z0-9_]*\}[A-Za-z0-9_\-./]*)*")


@dataclass(frozen=True)
class FunctionSpec:
    """One function folder as function.json declares it."""

    name: str
    bindings: tuple[dict, ...]
    entry: Callable[..., Any]

    @property
    def trigger(self) -> dict:
        return next(b for b in self.bindings if b.get("direction") == "in" and b["type"].endswith("Trigger"))


@dataclass
class Keys:
    """Function keys (any of them opens authLevel=function) and the master key (opens all)."""

    function: tuple[str, ...] = ()
    master: str = ""

    def allows(self, level: str, given: str | None) -> bool:
        if level == "anonymous":
            return True
        if not given:
            return False
        candidates = [self.master] + ([] if level == "admin" else list(self.function))
        return any(key and hmac.compare_digest(key, given) for key in candidates)


@dataclass
class FunctionApp:
    root: Path
    route_prefix: str
    functions: dict[str, FunctionSpec] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path = REPO) -> "FunctionApp":
        host = json.loads((root / "host.json").read_text())
        prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api").strip("/")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))  # as the host does: the app root is importable
        app = cls(root, prefix)
        for definition in sorted(root.glob("*/function.json")):
            folder = definition.parent
            config = json.loads(definition.read_text())
            if config.get("disabled"):
                continue
            module_name = folder.name
            script = config.get("scriptFile", "__init__.py")
            module = importlib.import_module(module_name if script == "__init__.py"
                                             else f"{module_name}.{Path(script).stem}")
            entry = getattr(module, config.get("entryPoint", "main"))
            app.functions[folder.name] = FunctionSpec(folder.name, tuple(config["bindings"]), entry)
        return app

    def http_functions(self) -> list[FunctionSpec]:
        return [spec for spec in self.functions.values() if spec.trigger["type"] == "httpTrigger"]

    def route_of(self, spec: FunctionSpec) -> str:
        route = spec.trigger.get("route", spec.name)
        if not _PLAIN_ROUTE.fullmatch(route):
            raise ValueError(f"{spec.name}: route {route!r} uses constraints this local host does not support")
        return "/" + "/".join(part for part in (self.route_prefix, route) if part)


def build_web_app(app: FunctionApp, keys: Keys) -> web.Application:
    web_app = web.Application(client_max_size=8 * 1024 * 1024)  # the function judges body size itself
    for spec in app.http_functions():
        methods = [m.upper() for m in spec.trigger.get("methods", ["get", "post"])]
        handler = _http_handler(spec, keys)
        for method in methods:
            web_app.router.add_route(method, app.route_of(spec), handler)
    return web_app


def _http_handler(spec: FunctionSpec, keys: Keys):
    level = spec.trigger.get("authLevel", "function").lower()

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get("x-functions-key") or request.query.get("code")
        if not keys.allows(level, given):
            return web.Response(status=401)
        body = await request.read()
        http_request = func.HttpRequest(
            method=request.method, url=str(request.url), headers=dict(request.headers),
            params={k: v for k, v in request.query.items() if k != "code"},
            route_params=dict(request.match_info), body=body,
        )
        if inspect.iscoroutinefunction(spec.entry):
            result = await spec.entry(http_request)
        else:  # the real host runs sync functions on a thread pool, off the event loop
            result = await asyncio.to_thread(spec.entry, http_request)
        return web.Response(body=result.get_body(), status=result.status_code,
                            headers={k: v for k, v in result.headers.items() if k.lower() != "content-length"})

    return handle


def load_local_settings(path: Path) -> tuple[dict[str, str], Keys, int | None]:
    """Values go into the environment (as the host does); FunctionKeys hold the local keys."""
    settings = json.loads(path.read_text())
    keys_section = settings.get("FunctionKeys", {})
    keys = Keys(function=tuple(v for k, v in keys_section.items() if k != "master"),
                master=keys_section.get("master", ""))
    port = settings.get("Host", {}).get("LocalHttpPort")
    return {k: str(v) for k, v in settings.get("Values", {}).items()}, keys, port


def banner(app: FunctionApp, base_url: str, keys: Keys) -> str:
    lines = ["", "Functions:", ""]
    for spec in app.http_functions():
        methods = ",".join(m.upper() for m in spec.trigger.get("methods", ["get", "post"]))
        lines.append(f"        {spec.name}: [{methods}] {base_url}{app.route_of(spec)}")
    lines += ["", f"Function key (x-functions-key header or ?code=): {keys.function[0] if keys.function else '(none)'}", ""]
    return "\n".join(lines)


async def serve(app: FunctionApp, keys: Keys, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(build_web_app(app, keys), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", type=Path, default=REPO / "local.settings.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    if not args.settings.exists():
        parser.error(f"{args.settings} not found: copy local.settings.example.json to local.settings.json")
    values, keys, settings_port = load_local_settings(args.settings)
    os.environ.update(values)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    port = args.port or settings_port or 7071
    app = FunctionApp.load()

    async def run() -> None:
        runner = await serve(app, keys, args.host, port)
        print(banner(app, f"http://{args.host}:{port}", keys), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await close_store()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        print("Stopped.")


if __name__ == "__main__":
    main()
