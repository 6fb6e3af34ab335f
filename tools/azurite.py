"""Start and stop a local Azurite Table service (npm package ``azurite``) on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from shared.store import DEVELOPMENT_STORAGE

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def azurite_table_command() -> str:
    local = REPO / "node_modules" / ".bin" / "azurite-table"
    found = str(local) if local.exists() else shutil.which("azurite-table")
    if found is None:
        raise RuntimeError("azurite-table not found: run `npm ci` in the repository (see README)")
    return found


AZURITE_KEEP_ALIVE_SECONDS = 60


class Azurite:
    """An in-memory Azurite Table service; ``connection_string`` points clients at it."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        return DEVELOPMENT_STORAGE.replace(":10002/", f":{self.port}/")

    def start(self, timeout: float = 30.0) -> Azurite:
        # Idle connections are better closed by the client first: Azurite's default (5 s) is below the
        # SDK's aiohttp pool (15 s), so requests would go out on connections Azurite is closing.
        self.process = subprocess.Popen(
            [
                azurite_table_command(),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.port),
                "--tableKeepAliveTimeout",
                str(AZURITE_KEEP_ALIVE_SECONDS),
                "--silent",
                "--disableTelemetry",
                "--inMemoryPersistence",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited: {self.process.stderr.read().decode(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
