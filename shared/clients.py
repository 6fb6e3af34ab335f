"""One client per event loop: aiohttp-based Azure clients are bound to the loop that made them.

The Functions worker runs every async function on one loop, so in production this is one client
per process, with its connections reused across invocations. A script that runs a function in
``asyncio.run`` ends its loop instead: each client is then closed as the loop shuts down (asyncio.run
cancels the tasks left and waits for them), so nothing is left unclosed at exit.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


ClientT = TypeVar("ClientT", bound=Closable)


class PerLoop(Generic[ClientT]):
    def __init__(self) -> None:
        # loop -> (its client, the task that closes it when the loop shuts down)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[ClientT, asyncio.Task]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, make: Callable[[], ClientT]) -> ClientT:
        loop = asyncio.get_running_loop()
        held = self._clients.get(loop)
        if held is None:
            client = make()
            held = self._clients[loop] = (client, loop.create_task(_close_when_cancelled(client)))
        return held[0]

    async def close(self) -> None:
        held = self._clients.pop(asyncio.get_running_loop(), None)
        if held is not None:
            closer = held[1]
            closer.cancel()
            try:
                await closer  # raises what closing the client raised
            except asyncio.CancelledError:
                pass


async def _close_when_cancelled(client: Closable) -> None:
    try:
        await asyncio.Event().wait()  # until cancelled: by close(), or by the loop's shutdown
    finally:
        await client.close()
