"""The demo: the whole service on this machine, a job moving through its states, its changes
delivered with faults to each source, what taskcounts serves from each watched next to the truth,
then validation closing the gap.

    ./dev demo [--tasks 20000] [--drop 0.05] [--duplicate 0.1] [--log-delay 60] [--sources both|grid|log] [--keep]

Sources, side by side by default, each counted by its own function host and tables: ``grid`` -- an
Event Grid producer publishes every change; ``log`` -- what a real Batch account gives with no
producer code: Batch's service log through the hub, each message exported late as Azure Monitor
exports resource logs (``--log-delay``: a median of 60 s, none later than 3x that; 0: at once),
plus the delta sync (every 5 s here) for what no log says (tasks added, retries, reactivations) and
the watched sync, which lists what changed in the job every second while the demo reads it.

Storage: an in-memory Azurite, or the account in AzureWebJobsStorage if that is set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from cli.taskcounts import Api, CliError, counts_table, freshness, total_of
from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY
from tools.stack import INGEST_KEY, MASTER_KEY, OPERATE_KEY, READ_KEY, SERVICE_LOG_HUB, Stack
from tools.termination import stop_children_on_termination

JOB_ID = "Demo-Render"


@dataclass(frozen=True)
class Source:
    """One way counts reach taskcounts, with the stack (function host + tables) that counts from it alone."""

    name: str  # "grid" | "log"
    title: str
    stack_options: dict


SOURCES = {
    "grid": Source(
        "grid", "Event Grid", {"service_log": False, "task_sync_schedule": None, "table_prefix": "eventgrid"}
    ),
    # the sync every 5 s: a demo job moves faster than the deployed default (30 s)
    "log": Source(
        "log",
        "service log + sync",
        {"service_log": True, "task_sync_schedule": "*/5 * * * * *", "table_prefix": "servicelog"},
    ),
}


class Demo:
    def __init__(
        self,
        stacks: dict[str, Stack],
        tasks: int,
        drop: float,
        duplicate: float,
        console: Console,
        log_delay: float = 0.0,
    ):
        self.stacks, self.tasks, self.drop, self.duplicate, self.console = stacks, tasks, drop, duplicate, console
        self.log_delay = log_delay  # median seconds the service log reaches the hub late; 0: at once
        self.apis = {name: Api(stack.app_url, READ_KEY) for name, stack in stacks.items()}
        self.simulator_url = next(iter(stacks.values())).simulator_url
        self.batch = BatchClient(self.simulator_url, AzureNamedKeyCredential(DEFAULT_ACCOUNT, DEFAULT_KEY))
        self.http = requests.Session()
        self.published = {
            name: dict.fromkeys(("events", "dropped", "duplicated", "batches", "retries"), 0) for name in stacks
        }

    def control(self, path: str, body: dict) -> Any:
        response = self.http.post(f"{self.simulator_url}/control/{path}", json=body, timeout=120)
        response.raise_for_status()
        return response.json()

    def publish(self, seed: int) -> None:
        """Deliver what changed since the last call to every source; the simulator keeps one outbox per source."""
        for name, stack in self.stacks.items():
            if name == "log":  # Batch writes its service log; no producer exists
                pump = {
                    "hub": SERVICE_LOG_HUB,
                    "recordsPerMessage": 50,
                    "drop": self.drop,
                    "duplicate": self.duplicate,
                    "reorder": True,
                    "noise": 0.1,
                    "seed": seed,
                }
                if self.log_delay:
                    pump["exportDelay"] = {"median": self.log_delay, "tail": 3 * self.log_delay}
                report = self.control("servicelog", pump)
                report = {**report, "events": report["records"], "batches": report["messages"], "retries": 0}
            else:
                report = self.control(
                    "publish",
                    {
                        "url": f"{stack.app_url}/api/taskevents",
                        "headers": {"x-functions-key": INGEST_KEY},
                        "maxEventsPerBatch": 1000,
                        "drop": self.drop,
                        "duplicate": self.duplicate,
                        "reorder": True,
                        "concurrency": 4,
                        "seed": seed,
                    },
                )
            for field_name, total in self.published[name].items():
                self.published[name][field_name] = total + report[field_name]

    def wait_until_known(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        for api in self.apis.values():
            while True:
                try:
                    api.counts(JOB_ID)
                    break
                except CliError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)

    def truth(self) -> dict:
        counts = self.batch.get_job_task_counts(JOB_ID).task_counts
        return {name: getattr(counts, name) for name in ("active", "running", "completed", "succeeded", "failed")}

    def delivered(self, name: str) -> str:
        p = self.published[name]
        if name == "log":
            late = (
                f"exported a median {self.log_delay:g} s late (none past {3 * self.log_delay:g} s)"
                if self.log_delay
                else "exported at once"
            )
            return (
                f"{p['events']:,} service-log records in {p['batches']} hub messages, {late}: {p['dropped']:,} "
                f"lost, {p['duplicated']:,} duplicated, all reordered; the delta sync and the watched sync list "
                "what no record says yet"
            )
        return (
            f"{p['events']:,} events in {p['batches']} batches: {p['dropped']:,} dropped, "
            f"{p['duplicated']:,} duplicated, all reordered; {p['retries']} redeliveries"
        )

    def frame(self, phase: str) -> Group:
        bodies = {name: api.counts(JOB_ID) for name, api in self.apis.items()}
        truth = self.truth()
        lines = [
            Text(phase, style="bold"),
            counts_table(
                f"{JOB_ID}: the truth, and what taskcounts serves from each source (magenta: differs)",
                {"taskCounts": truth},
                {SOURCES[name].title: body["taskCounts"] for name, body in bodies.items()},
                heading="truth",
            ),
        ]
        for name, body in bodies.items():
            gap = sum(abs(body["taskCounts"][k] - truth[k]) for k in truth)
            lines += [
                Text(f"{SOURCES[name].title}: ", style="bold")
                + Text(f"{gap} task(s) from the truth", style="green" if gap == 0 else "magenta"),
                Text(f"  {self.delivered(name)}"),
                Text(f"  {freshness(body)}", style="grey50"),
            ]
        return Group(*lines)

    def validate(self, live: Live) -> dict[str, dict]:
        """Validate the job on every stack at once; the final status body of each."""
        status_urls = {}
        for name, stack in self.stacks.items():
            started = self.http.post(
                f"{stack.app_url}/api/jobs/{JOB_ID}/validate", headers={"x-functions-key": OPERATE_KEY}, timeout=30
            )
            started.raise_for_status()
            status_urls[name] = started.json()["statusQueryGetUri"]
        finished: dict[str, dict] = {}
        while len(finished) < len(status_urls):
            phases = []
            for name, url in status_urls.items():
                if name in finished:
                    continue
                status = self.http.get(url, headers={"x-functions-key": READ_KEY}, timeout=30)
                custom = status.json().get("customStatus") or {}
                phases.append(
                    f"{SOURCES[name].title} {custom.get('phase', 'starting')}, "
                    f"{custom.get('tasksListed', 0):,} tasks listed"
                )
                if status.status_code != 202:
                    finished[name] = status.json()
            live.update(self.frame("validating: " + "; ".join(phases)))
            time.sleep(0.5)
        return finished

    def run(self) -> bool:
        self.control("jobs", {"id": JOB_ID, "tasks": self.tasks, "requiredSlots": 1})
        rng = random.Random(7)
        with Live(console=self.console, refresh_per_second=4) as live:
            self.publish(seed=0)
            if "log" in self.stacks:  # no record says a task was added: the delta sync finds the job
                live.update(Text("tasks added in Batch; waiting for the delta sync to find them ..."))
            self.wait_until_known()
            live.update(self.frame("tasks added"))
            for tick in range(1, 13):
                self.control(f"jobs/{JOB_ID}/step", {"moves": self.tasks // 3, "seed": rng.randrange(10**6)})
                self.publish(seed=tick)
                live.update(self.frame(f"running: step {tick}"))
            self.control(f"jobs/{JOB_ID}/finish", {"seed": 1})
            self.publish(seed=99)
            live.update(self.frame("every task finished; changes delivered with faults"))
            time.sleep(1)
            results = self.validate(live)
            live.update(self.frame("validated"))
        self.console.print()
        truth = self.truth()
        matched = True
        for name, body in results.items():
            output = body.get("output") or {}
            final = self.apis[name].counts(JOB_ID)["taskCounts"]
            matches = final == truth
            matched &= matches
            outcome = (
                f"listed {output.get('tasksListed', 0):,} tasks in {output.get('pages', 0)} pages, "
                f"corrected {output.get('corrected')}"
                if output.get("action") == "validated"
                else f"{output.get('action')}: {output.get('reason') or output.get('error')}"
            )
            self.console.print(
                Text(
                    f"{SOURCES[name].title}: validation {body.get('runtimeStatus')}, {outcome}; final counts "
                    f"{'MATCH' if matches else 'DO NOT MATCH'} the truth ({total_of(final):,} tasks)",
                    style="bold green" if matches else "bold red",
                )
            )
        return self.show_the_read_key_cannot_write() and matched

    def show_the_read_key_cannot_write(self) -> bool:
        """The key the dashboard and the CLI use reads, and is refused where counts are written or
        validations started: a viewer cannot change what others see."""
        name, stack = next(iter(self.stacks.items()))
        before = self.apis[name].counts(JOB_ID)["taskCounts"]
        event = [
            {
                "id": "demo-forged",
                "eventType": "Batch.TaskDeleted",
                "subject": f"jobs/{JOB_ID}/tasks/t",
                "eventTime": "2026-01-01T00:00:00Z",
                "dataVersion": "1.0",
                "data": {"jobId": JOB_ID, "id": "task-0000000"},
            }
        ]
        read = {"x-functions-key": READ_KEY}
        ingest = self.http.post(f"{stack.app_url}/api/taskevents", json=event, headers=read, timeout=30)
        validate = self.http.post(f"{stack.app_url}/api/jobs/{JOB_ID}/validate", headers=read, timeout=30)
        after = self.apis[name].counts(JOB_ID)["taskCounts"]
        refused = ingest.status_code == validate.status_code == 401 and after == before
        self.console.print(
            Text(
                f"Access: the read key ({READ_KEY}) reads the counts; with it, posting an event answers "
                f"HTTP {ingest.status_code} and starting a validation HTTP {validate.status_code}, and the counts "
                f"{'did not change' if after == before else 'CHANGED'}",
                style="bold green" if refused else "bold red",
            )
        )
        return refused

    def print_usage(self) -> None:
        hosts = "\n".join(
            f"  {SOURCES[name].title + ':':20} {stack.app_url}   (settings {stack.settings_path})"
            for name, stack in self.stacks.items()
        )
        url = next(iter(self.stacks.values())).app_url
        self.console.print(f"""
[bold]The stack keeps running (Ctrl-C stops it).[/bold] One function host per source, each with its own tables:
{hosts}
  dashboard      {{host}}/api/dashboard/   (paste the read key {READ_KEY} when the page asks)
  counts API     {{host}}/api/jobs/{{jobId}}/taskcounts   (read key: {READ_KEY})
  webhook        {{host}}/api/taskevents   (the ingest key, the producer's alone: {INGEST_KEY})
  validate now   {{host}}/api/jobs/{{jobId}}/validate   (operate key: {OPERATE_KEY})
  admin API      {{host}}/admin/functions/{{name}}   (the local host's master key: {MASTER_KEY})
  simulator      {self.simulator_url}   (account {DEFAULT_ACCOUNT}, key {DEFAULT_KEY})

  curl -s -H 'x-functions-key: {READ_KEY}' {url}/api/jobs/{JOB_ID}/taskcounts
  curl -s -H 'x-functions-key: {READ_KEY}' {url}/api/jobs
  curl -si -X POST -H 'x-functions-key: {OPERATE_KEY}' {url}/api/jobs/{JOB_ID}/validate
  curl -si -X POST -H 'x-functions-key: {MASTER_KEY}' {url}/admin/functions/ValidateCounts
  ./taskcounts --url {url} --key {READ_KEY} watch {JOB_ID}

  .venv/bin/python -c "from azure.batch import BatchClient; \\
from azure.core.credentials import AzureNamedKeyCredential as K; \\
print(BatchClient('{url}/api', K('x', 'eA==')).get_job_task_counts('{JOB_ID}', \\
headers={{'x-functions-key': '{READ_KEY}'}}))"
""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--drop", type=float, default=0.05, help="fraction of events (or records) never delivered")
    parser.add_argument("--duplicate", type=float, default=0.1, help="fraction of events (or records) delivered twice")
    parser.add_argument(
        "--log-delay",
        type=float,
        default=60.0,
        help="median seconds Batch's service log reaches the hub late (none past 3x; 0: at once)",
    )
    parser.add_argument(
        "--sources",
        choices=("both", *SOURCES),
        default="both",
        help="both (side by side); grid: an Event Grid producer; log: Batch's service log and the delta sync alone",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack running afterwards")
    parser.add_argument("--logs", type=Path, help="keep every process's log in this folder (one subfolder per source)")
    args = parser.parse_args(argv)
    stop_children_on_termination()
    console = Console()
    storage = os.environ.get("AzureWebJobsStorage") or None
    console.print(
        "Starting "
        + ("Azurite (in memory)" if storage is None else "with the storage account from AzureWebJobsStorage")
        + ", the Batch simulator and a function host per source ..."
    )
    names = list(SOURCES) if args.sources == "both" else [args.sources]
    with contextlib.ExitStack() as running:
        stacks: dict[str, Stack] = {}
        for name in names:
            first = next(iter(stacks.values()), None)
            shared_parts = (
                {}
                if first is None
                else {  # one Azurite, one simulator; tables apart by prefix
                    "storage_connection": first.connection,
                    "external_simulator_port": first.simulator_port,
                }
            )
            log_dir = None if args.logs is None else args.logs / name
            if log_dir is not None:
                log_dir.mkdir(parents=True, exist_ok=True)
            stacks[name] = running.enter_context(
                Stack(
                    **{"storage_connection": storage, "log_dir": log_dir, **shared_parts, **SOURCES[name].stack_options}
                )
            )
        demo = Demo(stacks, args.tasks, args.drop, args.duplicate, console, args.log_delay)
        for name, stack in stacks.items():
            console.print(
                f"Watch {SOURCES[name].title} in a browser: {stack.app_url}/api/dashboard/ (read key {READ_KEY})"
            )
        matched = demo.run()
        if args.keep:
            demo.print_usage()
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("Stopping ...")
    return 0 if matched else 1


if __name__ == "__main__":
    raise SystemExit(main())
