"""A fault-injecting HTTP proxy in front of Azurite (tests and chaos runs only).

A fraction of requests fail *before* reaching storage (nothing written) and a fraction *after*
storage answered (written, but the client sees a 503 or a cut connection): the ambiguous case an
exactly-once store must survive. ``POST /_faults {"cutBatches": n}`` cuts the next n entity-group
transactions after storage answered, for tests that need exactly that. ``POST /_faults
{"holdAfterBatches": n}`` lets n more transactions through, then holds every request until
``{"release": true}``: a writer is then certainly stopped between two of its writes, however fast
the machine is. Counts what it injected.

    python -m tools.faultproxy --target http://127.0.0.1:10002 --port 10102 --before 0.03 --after 0.03
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random

import aiohttp
from aiohttp import web
from yarl import URL

from tools import serving

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
STATS = web.AppKey("stats", dict)
SESSION = web.AppKey("session", aiohttp.ClientSession)


def build_app(target: str, before: float, after: float, seed: int = 0) -> web.Application:
    rng = random.Random(seed)
    stats = {"requests": 0, "failed_before": 0, "failed_after": 0, "cut_after": 0}
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATS] = stats

    async def session_context(app_: web.Application):
        app_[SESSION] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app_[SESSION].close()

    app.cleanup_ctx.append(session_context)

    rates = {"before": before, "after": after, "cutBatches": 0}
    hold = StorageHold()

    def state() -> dict:
        return {**stats, **rates, "held": hold.waiting, "holding": hold.armed}

    async def stats_handler(request: web.Request) -> web.Response:
        return web.json_response(state())

    async def set_rates(request: web.Request) -> web.Response:
        """{"before": 0.0, "after": 0.0, "cutBatches": 0, "holdAfterBatches": n, "release": true}:
        change the faults from now on; a release answers once every held request has been forwarded."""
        body = await request.json()
        rates.update({k: float(v) for k, v in body.items() if k in rates})
        if "holdAfterBatches" in body:
            hold.arm(int(body["holdAfterBatches"]))
        if body.get("release"):
            await hold.release()
        return web.json_response(state())

    async def forward(request: web.Request) -> web.StreamResponse:
        stats["requests"] += 1
        is_batch = request.method == "POST" and request.path.endswith("/$batch")
        async with hold.gate(is_batch):
            return await pass_on(request, is_batch)

    async def pass_on(request: web.Request, is_batch: bool) -> web.StreamResponse:
        roll = rng.random()
        if roll < rates["before"]:
            stats["failed_before"] += 1
            return _server_busy()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        # The path exactly as signed: decoding or requoting %27 would break the SharedKey signature.
        url = URL(target + request.raw_path, encoded=True)
        # data=None for an empty body: aiohttp would add a Content-Type, which SharedKey signs.
        async with request.app[SESSION].request(request.method, url, headers=headers, data=body or None) as upstream:
            payload = await upstream.read()
            cut_batch = is_batch and rates["cutBatches"] >= 1
            if cut_batch or roll < rates["before"] + rates["after"]:  # storage did the work; the answer is lost
                if cut_batch:
                    rates["cutBatches"] -= 1
                elif rng.random() < 0.5:
                    stats["failed_after"] += 1
                    return _server_busy()
                stats["cut_after"] += 1
                request.transport.close()
                raise ConnectionResetError("connection cut by the fault proxy")
            response = web.Response(body=payload, status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_HEADERS:
                    response.headers.add(name, value)
            return response

    app.router.add_get("/_faults", stats_handler)
    app.router.add_post("/_faults", set_rates)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


class StorageHold:
    """Once armed, the next n entity-group transactions pass; every request after them waits until
    released, then is forwarded, as a network would deliver it late."""

    def __init__(self) -> None:
        self.batches_left: int | None = None  # None: not armed
        self.waiting = 0  # requests held now
        self._late = 0  # released requests not answered yet
        self._open = asyncio.Event()
        self._open.set()
        self._drained = asyncio.Event()

    @property
    def armed(self) -> bool:
        return self.batches_left is not None

    def arm(self, batches: int) -> None:
        self.batches_left = batches
        self._open = asyncio.Event()

    async def release(self) -> None:
        """Let every held request go on; returns once they have all been answered."""
        self.batches_left = None
        self._drained.clear()
        self._open.set()
        self._check_drained()
        await self._drained.wait()

    def _check_drained(self) -> None:
        if not self.waiting and not self._late:
            self._drained.set()

    @contextlib.asynccontextmanager
    async def gate(self, is_batch: bool):
        if self.batches_left is None or self.batches_left > 0:
            if self.batches_left is not None:
                self.batches_left -= int(is_batch)
            yield
            return
        self.waiting += 1
        try:
            await self._open.wait()
            self._late += 1
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._late -= 1
            self._check_drained()


def _server_busy() -> web.Response:
    body = {"odata.error": {"code": "ServerBusy", "message": {"lang": "en-US", "value": "Injected fault."}}}
    return web.Response(text=json.dumps(body), status=503, content_type="application/json")


async def serve(target: str, port: int, before: float, after: float, seed: int = 0) -> web.AppRunner:
    return await serving.start(build_app(target, before, after, seed), "127.0.0.1", port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--before", type=float, default=0.03)
    parser.add_argument("--after", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    async def begin():
        return (await serve(args.target, args.port, args.before, args.after, args.seed)).cleanup

    serving.run_until_interrupted(begin, lambda: f"fault proxy on 127.0.0.1:{args.port} -> {args.target}")


if __name__ == "__main__":
    main()
