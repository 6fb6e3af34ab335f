"""The demo: the whole service on this machine, a job moving through its states, its changes
delivered with faults, the counts API watched next to the truth, then validation closing the gap.

    ./dev demo [--tasks 20000] [--drop 0.05] [--duplicate 0.1] [--sources grid|log] [--keep]

Sources: ``grid`` (default) -- an Event Grid producer publishes every change; ``log`` -- what a
real Batch account gives with no producer code: Batch's service log through the hub, plus the
delta sync (every 5 s here) for what no log says (tasks added, retries, reactivations).

Storage: an in-memory Azurite, or the account in AzureWebJobsStorage if that is set.
"""
from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

import requests
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY
from tools.cli import Api, CliError, counts_table, total_of
from tools.stack import FUNCTION_KEY, MASTER_KEY, SERVICE_LOG_HUB, Stack

JOB_ID = "Demo-Render"


class Demo:
    def __init__(self, stack: Stack, tasks: int, drop: float, duplicate: float, console: Console, sources: str = "grid"):
        self.stack, self.tasks, self.drop, self.duplicate, self.console = stack, tasks, drop, duplicate, console
        self.sources = sources
        self.api = Api(stack.app_url, FUNCTION_KEY)
        self.batch = BatchClient(stack.simulator_url, AzureNamedKeyCredential(DEFAULT_ACCOUNT, DEFAULT_KEY))
        self.http = requests.Session()
        self.published = {"events": 0, "dropped": 0, "duplicated": 0, "batches": 0, "retries": 0}

    def control(self, path: str, body: dict) -> Any:
        response = self.http.post(f"{self.stack.simulator_url}/control/{path}", json=body, timeout=120)
        response.raise_for_status()
        return response.json()

    def publish(self, seed: int) -> None:
        if self.sources == "log":  # Batch writes its service log; no producer exists
            report = self.control("servicelog", {
                "hub": SERVICE_LOG_HUB, "recordsPerMessage": 50, "drop": self.drop, "duplicate": self.duplicate,
                "reorder": True, "noise": 0.1, "seed": seed})
            report = {**report, "events": report["records"], "batches": report["messages"], "retries": 0}
            for name in self.published:
                self.published[name] += report[name]
            return
        report = self.control("publish", {
            "url": f"{self.stack.app_url}/api/taskevents", "headers": {"x-functions-key": FUNCTION_KEY},
            "maxEventsPerBatch": 1000, "drop": self.drop, "duplicate": self.duplicate, "reorder": True,
            "concurrency": 4, "seed": seed})
        for name in self.published:
            self.published[name] += report[name]

    def wait_until_known(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.api.counts(JOB_ID)
                return
            except CliError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def truth(self) -> dict:
        counts = self.batch.get_job_task_counts(JOB_ID).task_counts
        return {name: getattr(counts, name) for name in ("active", "running", "completed", "succeeded", "failed")}

    def frame(self, phase: str) -> Group:
        body = self.api.counts(JOB_ID)
        truth = self.truth()
        gap = sum(abs(body["taskCounts"][k] - truth[k]) for k in truth)
        p = self.published
        lines = [
            Text(f"{phase}", style="bold"),
            counts_table(f"{JOB_ID}: counts API (left) vs the simulator's truth (right)", body, truth, "truth"),
            Text(f"service-log records {p['events']:,} in {p['batches']} hub messages: {p['dropped']:,} lost, "
                 f"{p['duplicated']:,} duplicated, all reordered; the delta sync lists what no record says"
                 if self.sources == "log" else
                 f"events published {p['events']:,} in {p['batches']} batches: {p['dropped']:,} dropped, "
                 f"{p['duplicated']:,} duplicated, all reordered; {p['retries']} redeliveries"),
            Text(f"difference from the truth: {gap} task(s)", style="green" if gap == 0 else "magenta"),
        ]
        return Group(*lines)

    def run(self) -> bool:
        self.control("jobs", {"id": JOB_ID, "tasks": self.tasks, "requiredSlots": 1})
        rng = random.Random(7)
        with Live(console=self.console, refresh_per_second=4) as live:
            self.publish(seed=0)
            if self.sources == "log":  # no record says a task was added: the delta sync finds the job
                live.update(Text("tasks added in Batch; waiting for the delta sync to find them ..."))
                self.wait_until_known()
            live.update(self.frame("tasks added"))
            for tick in range(1, 13):
                self.control(f"jobs/{JOB_ID}/step", {"moves": self.tasks // 3, "seed": rng.randrange(10**6)})
                self.publish(seed=tick)
                live.update(self.frame(f"running: step {tick}"))
            self.control(f"jobs/{JOB_ID}/finish", {"seed": 1})
            self.publish(seed=99)
            live.update(self.frame("every task finished; events delivered with faults"))
            time.sleep(1)
            started = self.http.post(f"{self.stack.app_url}/api/jobs/{JOB_ID}/validate",
                                     headers={"x-functions-key": FUNCTION_KEY}, timeout=30)
            started.raise_for_status()
            status_url = started.json()["statusQueryGetUri"]
            while True:
                status = self.http.get(status_url, timeout=30)
                body = status.json()
                custom = body.get("customStatus") or {}
                live.update(self.frame(f"validating: {custom.get('phase', 'starting')}, "
                                       f"{custom.get('tasksListed', 0):,} tasks listed"))
                if status.status_code != 202:
                    break
                time.sleep(0.5)
            live.update(self.frame("validated"))
        self.console.print()
        output = body.get("output") or {}
        final = self.api.counts(JOB_ID)["taskCounts"]
        matches = final == self.truth()
        self.console.print(Text(
            f"validation {body.get('runtimeStatus')}: listed {output.get('tasksListed', 0):,} tasks in "
            f"{output.get('pages', 0)} pages, corrected {output.get('corrected')}; "
            f"final counts {'MATCH' if matches else 'DO NOT MATCH'} the truth ({total_of(final):,} tasks)",
            style="bold green" if matches else "bold red"))
        return matches

    def print_usage(self) -> None:
        url, sim = self.stack.app_url, self.stack.simulator_url
        self.console.print(f"""
[bold]The stack keeps running (Ctrl-C stops it).[/bold]
  counts API     {url}/api/jobs/{{jobId}}/taskcounts   (function key: {FUNCTION_KEY}, master key: {MASTER_KEY})
  webhook        {url}/api/taskevents
  simulator      {sim}   (account {DEFAULT_ACCOUNT}, key {DEFAULT_KEY})
  settings       {self.stack.settings_path}

  curl -s -H 'x-functions-key: {FUNCTION_KEY}' {url}/api/jobs/{JOB_ID}/taskcounts
  curl -s -H 'x-functions-key: {FUNCTION_KEY}' {url}/api/jobs
  curl -si -X POST -H 'x-functions-key: {FUNCTION_KEY}' {url}/api/jobs/{JOB_ID}/validate
  curl -si -X POST -H 'x-functions-key: {MASTER_KEY}' {url}/admin/functions/ValidateCounts
  ./taskcounts --url {url} --key {FUNCTION_KEY} watch {JOB_ID}

  .venv/bin/python -c "from azure.batch import BatchClient; from azure.core.credentials import AzureNamedKeyCredential as K; \\
print(BatchClient('{url}/api', K('x', 'eA==')).get_job_task_counts('{JOB_ID}', headers={{'x-functions-key': '{FUNCTION_KEY}'}}))"
""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--drop", type=float, default=0.05, help="fraction of events never delivered")
    parser.add_argument("--duplicate", type=float, default=0.1, help="fraction of events delivered twice")
    parser.add_argument("--sources", choices=("grid", "log"), default="grid",
                        help="grid: an Event Grid producer; log: Batch's service log and the delta sync alone")
    parser.add_argument("--keep", action="store_true", help="keep the stack running afterwards")
    args = parser.parse_args(argv)
    console = Console()
    storage = os.environ.get("AzureWebJobsStorage") or None
    console.print(f"Starting {'Azurite (in memory)' if storage is None else 'with the storage account from AzureWebJobsStorage'}, "
                  "the Batch simulator and the function host ...")
    from_log = args.sources == "log"
    with Stack(storage_connection=storage, service_log=from_log,
               task_sync_schedule="*/5 * * * * *" if from_log else None) as stack:
        demo = Demo(stack, args.tasks, args.drop, args.duplicate, console, args.sources)
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
