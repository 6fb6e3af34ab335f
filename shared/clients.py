"""One client per event loop: aiohttp-based Azure clients are bound to the loop that made them.

The Functions worker runs every async function on one loop, so in production this is one client
per process, with its connections reused across invocations.
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Awaitable, Callable, Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


ClientT = TypeVar("ClientT", bound=Closable)


class PerLoop(Generic[ClientT]):
    def __init__(self) -> None:
        self._clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientT]" = weakref.WeakKeyDictionary()

    def get(self, make: Callable[[], ClientT]) -> ClientT:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = make()
        return client

    async def close(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
