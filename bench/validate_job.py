"""Child process of bench.validation: validate one job through the real workflow and activity
folders, timing each phase, and print one JSON line (its own peak memory included)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from shared.batch import close_batch
from shared.store import close_store
from shared.validation import workflow
from tools.funchost import FunctionApp

PHASES = {workflow.BEGIN: "begin", workflow.LIST_PAGES: "listing", workflow.SWEEP: "sweeps", workflow.FINISH: "finish"}


async def main(job_id: str) -> dict:
    app = FunctionApp.load()
    engine = app.durable_engine()
    spans: dict[str, list[float]] = {}  # phase -> [first start, last end]: wall time, parallel sweeps included

    def timed(name, entry):
        async def run(payload):
            started = time.perf_counter()
            try:
                return await entry(payload)
            finally:
                span = spans.setdefault(PHASES[name], [started, started])
                span[0], span[1] = min(span[0], started), max(span[1], time.perf_counter())

        return run

    for name in PHASES:
        engine.functions[name] = ("activityTrigger", timed(name, app.functions[name].entry))
    started = time.perf_counter()
    instance = await engine.run(workflow.VALIDATE_JOB, {"jobKey": job_id.lower(), "jobId": job_id}, "bench")
    wall = time.perf_counter() - started
    await close_store()
    await close_batch()
    return {
        "wall_seconds": wall,
        "phase_seconds": {phase: end - start for phase, (start, end) in spans.items()},
        "output": instance.output,
        "status": instance.runtime_status,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's own peak resident memory: VmHWM, the high-water mark of the memory it has had
    since it started this program. Not ``ru_maxrss``: Linux carries that over a fork and exec from
    the parent, so it reported the benchmark's seeding (~800 MB at 1,000,000 tasks) as the pass's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
