"""The dashboard's picture (docs/dashboard.png), made from the running demo stack: a few jobs moving in the
Batch simulator, one of them failing, one stopped.

    ./dev screenshot [--out docs/dashboard.png] [--width 1280] [--height 800]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import requests

from tools.browser import chromium, open_dashboard
from tools.stack import INGEST_KEY, READ_KEY, Stack
from tools.termination import stop_children_on_termination

REPO = Path(__file__).resolve().parent.parent
# (job, tasks, random moves per step, tasks failed outright per step): what the picture shows.
JOBS = (
    ("Render-Frames", 4000, 700, 0),
    ("Nightly-ETL", 1200, 200, 0),
    ("Genome-Align", 2500, 150, 15),
    ("Stuck-Pool", 600, 0, 0),
)  # nothing moves after its first step: "stalled" once STALL_MINUTES pass


def seed(stack: Stack, steps: int = 4, pause: float = 1.5) -> None:
    """Create the jobs and move them a few steps, delivering every change over Event Grid."""
    session = requests.Session()

    def control(path: str, body: dict) -> None:
        session.post(f"{stack.simulator_url}/control/{path}", json=body, timeout=120).raise_for_status()

    for job, tasks, _, _ in JOBS:
        control("jobs", {"id": job, "tasks": tasks})
    control("jobs/Stuck-Pool/step", {"moves": 300, "seed": 1})  # then nothing moves
    failed = 0
    for step in range(steps):
        for job, _, moves, failures in JOBS:
            if moves:
                control(f"jobs/{job}/step", {"moves": moves, "seed": step})
            failing = [f"failing-{failed + n}" for n in range(failures)]  # tasks the random moves never touched
            if failing:
                control(f"jobs/{job}/tasks", {"ids": failing})
            for task in failing:
                control(f"jobs/{job}/tasks/{task}/start", {})
                control(f"jobs/{job}/tasks/{task}/complete", {"exitCode": 1})
            failed += failures
        control("publish", {"url": f"{stack.app_url}/api/taskevents", "headers": {"x-functions-key": INGEST_KEY}})
        time.sleep(pause)  # the progress timer records a point between steps: the rate and chart have data


async def capture(app_url: str, out: Path, viewport: tuple[int, int]) -> Path:
    async with chromium() as browser:
        page = await open_dashboard(browser, app_url, READ_KEY, viewport)
        try:
            await page.wait_for_selector("article.card")
        except Exception:
            raise RuntimeError(f"the dashboard showed no job: {await page.text_content('#status')}") from None
        out.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out), full_page=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)
    stop_children_on_termination()
    with Stack(
        validation_schedule="0 0 0 1 1 *", service_log=False, task_sync_schedule=None, progress_schedule="* * * * * *"
    ) as stack:
        seed(stack)
        print(f"wrote {asyncio.run(capture(stack.app_url, args.out, (args.width, args.height)))}")


if __name__ == "__main__":
    main()
