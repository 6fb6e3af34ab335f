"""The whole service on one machine, as processes: Azurite, the Batch simulator and the local
function host, on free loopback ports. Always cleaned up, even on failure (a context manager).

Azurite is started unless ``storage_connection`` names a real storage account.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.azurite import Azurite, free_port
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY

REPO = Path(__file__).resolve().parent.parent
SERVICE_LOG_HUB = "batch-service-log"
# The local keys, one per kind of access (shared.access); local.settings.example.json holds the same.
READ_KEY = "local-read-key-not-a-secret"
INGEST_KEY = "local-ingest-key-not-a-secret"
OPERATE_KEY = "local-operate-key-not-a-secret"
MASTER_KEY = "local-master-key"  # the local host's admin API (fire a timer now)
ACCESS_KEYS = {
    "ACCESS_MODE": "keys",
    "ACCESS_READ_KEYS": READ_KEY,
    "ACCESS_INGEST_KEYS": INGEST_KEY,
    "ACCESS_OPERATE_KEYS": OPERATE_KEY,
}


@dataclass
class Stack:
    storage_connection: str | None = None  # a real account; None starts Azurite
    validation_schedule: str = "0 */5 * * * *"
    validation_max_tasks: int = 200_000
    job_partitions: int = 4
    service_log: bool = True  # BatchServiceLogs reads the simulator's hub
    task_sync_schedule: str | None = "*/10 * * * * *"  # None: SyncTasks disabled
    progress_schedule: str = "*/5 * * * * *"  # history points every 5 s: a dashboard moves on a short demo
    summary_schedule: str = "*/2 * * * * *"  # the jobs list follows within 2 s
    stall_minutes: int = 15
    table_prefix: str = "taskcounts"
    # "entra": the app trusts X-MS-CLIENT-PRINCIPAL as if App Service Authentication were in front (the
    # local host passes the header as given; only Azure validates tokens): role checks tested for real
    access_mode: str = "keys"
    retry_interval_scale: float = 0.05  # function.json retry waits (5 s ...) shortened for local runs
    storage_faults: tuple[float, float] | None = None  # (before, after): a tools.faultproxy in front of Azurite
    external_simulator_port: int | None = None  # a simulator the caller runs (e.g. in-process); else one is started
    log_dir: Path | None = None
    app_repo: Path = REPO  # the tree whose function host runs (a benchmark may run an older commit's)
    app_port: int = field(default_factory=free_port)
    simulator_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    azurite: Azurite | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)
    connection: str | None = field(default=None, init=False)  # the storage the app uses (Azurite, via the proxy)
    _workdir: Path | None = None

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.external_simulator_port or self.simulator_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def settings_path(self) -> Path:
        return self._workdir / "local.settings.json"

    def control(self, path: str, body: dict | None = None, timeout: float = 120) -> Any:
        """POST to the simulator's ``/control/{path}``; its JSON answer (None when empty). A refusal raises."""
        request = urllib.request.Request(
            f"{self.simulator_url}/control/{path}",
            data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = response.read()
        return json.loads(answer) if answer else None

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="taskcounts-stack-"))
        logs = self.log_dir or self._workdir
        connection = self.storage_connection
        if connection is None:
            self.azurite = Azurite().start()
            connection = self.azurite.connection_string
            if self.storage_faults is not None:
                before, after = self.storage_faults
                self._spawn(
                    "faultproxy",
                    [
                        "-m",
                        "tools.faultproxy",
                        "--target",
                        f"http://127.0.0.1:{self.azurite.port}",
                        "--port",
                        str(self.proxy_port),
                        "--before",
                        str(before),
                        "--after",
                        str(after),
                    ],
                    logs,
                )
                _wait_for_port(self.proxy_port, self.processes)
                connection = connection.replace(f":{self.azurite.port}/", f":{self.proxy_port}/")
        self.connection = connection
        values = {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": connection,
            "COUNTS_TABLE_PREFIX": self.table_prefix,
            "JOB_PARTITIONS": str(self.job_partitions),
            "BATCH_ACCOUNT_URL": self.simulator_url,
            "BATCH_ACCOUNT_NAME": DEFAULT_ACCOUNT,
            "BATCH_ACCOUNT_KEY": DEFAULT_KEY,
            "VALIDATION_MAX_TASKS": str(self.validation_max_tasks),
            "VALIDATION_SCHEDULE": self.validation_schedule,
            "RETENTION_DAYS": "7",
            "TASK_SYNC_SCHEDULE": self.task_sync_schedule or "0 0 0 1 1 *",
            "PROGRESS_SCHEDULE": self.progress_schedule,
            "SUMMARY_SCHEDULE": self.summary_schedule,
            "STALL_MINUTES": str(self.stall_minutes),
            "BATCH_LOG_HUB": SERVICE_LOG_HUB,
            "BATCH_LOG_CONSUMER_GROUP": "taskcounts",
            **ACCESS_KEYS,
        }
        if self.access_mode == "entra":
            values.update({"ACCESS_MODE": "entra", "WEBSITE_AUTH_ENABLED": "True"})
        if self.service_log:
            values["BATCH_LOG"] = f"Endpoint={self.simulator_url}/;EntityPath={SERVICE_LOG_HUB}"
        else:
            values["AzureWebJobs.BatchServiceLogs.Disabled"] = "true"
        if self.task_sync_schedule is None:  # the Event Grid path alone: no listing but validation's
            values["AzureWebJobs.SyncTasks.Disabled"] = "true"
            values["AzureWebJobs.WatchedSync.Disabled"] = "true"
        self.settings_path.write_text(
            json.dumps(
                {
                    "IsEncrypted": False,
                    "Values": values,
                    "Host": {"LocalHttpPort": self.app_port},
                    "FunctionKeys": {"master": MASTER_KEY},
                },
                indent=2,
            )
        )
        if self.external_simulator_port is None:
            self._spawn("batchsim", ["-m", "tools.batchsim", "--port", str(self.simulator_port), "--service-log"], logs)
            _wait_for_port(self.simulator_port, self.processes)
        self._start_app(logs)
        _wait_for_port(self.app_port, self.processes)

    def _start_app(self, logs: Path) -> None:
        self._spawn(
            "funchost",
            [
                "-m",
                "tools.funchost",
                "--settings",
                str(self.settings_path),
                "--port",
                str(self.app_port),
                "--retry-interval-scale",
                str(self.retry_interval_scale),
            ],
            logs,
            cwd=self.app_repo,
        )

    def kill_app(self) -> None:
        """SIGKILL the function host: no clean-up runs, in-flight work is cut wherever it is."""
        app = self.processes.pop()
        app.kill()
        app.wait()

    def start_app(self) -> None:
        """Start the function host again on the same port (after kill_app)."""
        self._start_app(self.log_dir or self._workdir)
        _wait_for_port(self.app_port, self.processes)

    def _spawn(self, name: str, args: list[str], logs: Path, cwd: Path = REPO) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(logs / f"{name}.log", "ab") as log:  # the process writes to its own copy of the file
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, *args],
                    cwd=cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )

    def log_text(self, name: str) -> str:
        path = (self.log_dir or self._workdir) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # Ctrl-C: the servers shut down cleanly
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None
        if self._workdir is not None and self.log_dir is None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def _wait_for_port(port: int, processes: list[subprocess.Popen], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(process.args)} exited with {process.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")
