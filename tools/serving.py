"""Serving an aiohttp application on loopback, for the local tools."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def run_until_interrupted(
    begin: Callable[[], Awaitable[Callable[[], Awaitable[None]]]], banner: Callable[[], str]
) -> None:
    """Run ``begin()`` (which returns its own stop coroutine), print the banner, serve until
    Ctrl-C or SIGTERM, then stop cleanly."""

    async def main() -> None:
        stop = await begin()
        print(banner(), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await stop()

    # A shell starts a background job with SIGINT ignored, and asyncio takes SIGINT over only from
    # its default handler: restore that, so SIGINT stops the tool however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
