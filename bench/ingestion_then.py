"""The hot-job workload through the code as it was when issue #11 was filed, for bench.ingestion.

    PYTHONPATH=<that commit's tree> python bench/ingestion_then.py CONNECTION_STRING DELIVERIES_FILE

Run by ``bench.ingestion`` in a subprocess whose ``shared`` package is that commit's (extracted with
``git archive``), against the same Azurite and with the same deliveries as the current code's run:
"the hot-job figure not lower than today's in the same run". It imports only what that commit's
bench imported (``Settings.from_env``, ``CountsStore.from_settings``, ``handle_delivery``), sends the
deliveries 4 in flight as ``bench.ingestion.batched`` does, and prints ``{"events_per_s": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime

from shared.config import Settings
from shared.ingest import handle_delivery
from shared.store import CountsStore

IN_FLIGHT = 4


async def deliver_all(connection: str, deliveries: list[str]) -> float:
    store = CountsStore.from_settings(
        Settings.from_env({"AzureWebJobsStorage": connection, "COUNTS_TABLE_PREFIX": "then"})
    )
    await store.ensure_tables()
    events = sum(len(json.loads(body)) for body in deliveries)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def deliver(body: str) -> None:
        async with slots:
            reply = await handle_delivery(store, "POST", {}, body.encode(), datetime.now(UTC))
        if reply.status != 200:
            raise RuntimeError(f"delivery answered {reply.status}: {reply.body}")

    started = time.perf_counter()
    await asyncio.gather(*(deliver(body) for body in deliveries))
    seconds = time.perf_counter() - started
    await store.close()
    return events / seconds


if __name__ == "__main__":
    connection_string, deliveries_file = sys.argv[1:3]
    with open(deliveries_file, encoding="utf-8") as source:
        rate = asyncio.run(deliver_all(connection_string, json.load(source)))
    print(json.dumps({"events_per_s": round(rate)}))
