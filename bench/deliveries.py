"""Small deliveries through the TaskEvents code path (``shared.ingest.handle_delivery``), where the
code's own cost per delivery shows most: 1-event deliveries to one job and to 50, and 100-event
deliveries to 50 jobs, after a warm-up, on a fresh Azurite. Writes bench/results/deliveries.json.

    .venv/bin/python -m bench.deliveries
    .venv/bin/python -m bench.versus --then 4c588d4 --now 6c26e78 --runs 7 --results deliveries \\
        --copy bench/deliveries.py -- bench.deliveries

It uses only what bench.ingestion has had since issue #11 (``lifecycle_events``, ``batched``,
``batch_job_size``), so ``bench.versus --copy`` can run it on an older commit's tree.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bench.ingestion import batch_job_size, batched, lifecycle_events
from shared.config import Settings
from shared.store import CountsStore
from tools.azurite import Azurite

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ((1, 1, 3000), (1, 50, 3000), (100, 50, 20_000))  # events per delivery, jobs, events


async def main() -> dict:
    results = {}
    with Azurite() as azurite:
        settings = Settings.from_env({"AzureWebJobsStorage": azurite.connection_string, "COUNTS_TABLE_PREFIX": "bench"})
        store = CountsStore.from_settings(settings, batch_job_size)
        await store.ensure_tables()
        await batched(store, lifecycle_events(1000, 1, "warm"), 1)
        for per_delivery, jobs, events in CASES:
            rate = await batched(store, lifecycle_events(events, jobs, f"b{per_delivery}x{jobs}"), per_delivery)
            results[f"{per_delivery}_per_delivery_{jobs}_jobs_events_per_s"] = round(rate)
        await store.close()
    return results


if __name__ == "__main__":
    figures = asyncio.run(main())
    print(json.dumps(figures))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deliveries.json").write_text(json.dumps(figures, indent=2))
