"""Table Storage: task rows, counter rows, the job index, validation listings, rejected events.

The one package that talks to azure-data-tables (README "Storage layout"). Callers use the
``CountsStore`` facade; behind it, one module per table (``tasks``, ``jobs``, ``scans``,
``rejected``), the pure row codec (``codec``), the pure sweep decision (``reconcile``) and the
shared client plumbing (``tables``).
"""
from __future__ import annotations

from shared.clients import PerLoop
from shared.config import Settings
from shared.store.codec import COUNTER_ROW, partition_key, raw_text_of, shard_of
from shared.store.facade import CountsStore
from shared.store.records import ApplyOutcome, JobCounts, JobRecord, Observation, Observed, SyncPosition
from shared.store.tables import DEVELOPMENT_STORAGE

__all__ = [
    "COUNTER_ROW", "DEVELOPMENT_STORAGE", "ApplyOutcome", "CountsStore", "JobCounts", "JobRecord", "Observation",
    "Observed", "SyncPosition", "close_store", "get_store", "partition_key", "raw_text_of", "shard_of",
]

_stores: PerLoop[CountsStore] = PerLoop()


def get_store(settings: Settings) -> CountsStore:
    """The process's store for the running event loop: clients and connections are reused."""
    return _stores.get(lambda: CountsStore.from_settings(settings))


async def close_store() -> None:
    """Close the running loop's store (host shutdown, end of a test session)."""
    await _stores.close()
