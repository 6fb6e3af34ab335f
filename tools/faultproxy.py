"""A fault-injecting HTTP proxy in front of Azurite (tests and chaos runs only).

A fraction of requests fail *before* reaching storage (nothing written) and a fraction *after*
storage answered (written, but the client sees a 503 or a cut connection): the ambiguous case an
exactly-once store must survive. ``POST /_faults {"cutBatches": n}`` cuts the next n entity-group
transactions after storage answered, for tests that need exactly that. Counts what it injected.

    python -m tools.faultproxy --target http://127.0.0.1:10002 --port 10102 --before 0.03 --after 0.03
"""
from __future__ import annotations

import argparse
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

    async def stats_handler(request: web.Request) -> web.Response:
        return web.json_response({**stats, **rates})

    async def set_rates(request: web.Request) -> web.Response:
        """{"before": 0.0, "after": 0.0, "cutBatches": 0}: change the faults from now on."""
        rates.update({k: float(v) for k, v in (await request.json()).items() if k in rates})
        return web.json_response({**stats, **rates})

    async def forward(request: web.Request) -> web.StreamResponse:
        stats["requests"] += 1
        roll = rng.random()
        if roll < rates["before"]:
            stats["failed_before"] += 1
            return _server_busy()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        # The path exactly as signed: decoding or requoting %27 would break the SharedKey signature.
        url = URL(target + request.raw_path, encoded=True)
        # data=None for an empty body: aiohttp would add a Content-Type, which SharedKey signs.
        async with request.app[SESSION].request(request.method, url, headers=headers,
                                                  data=body or None) as upstream:
            payload = await upstream.read()
            cut_batch = request.method == "POST" and request.path.endswith("/$batch") and rates["cutBatches"] >= 1
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
