"""Table Storage: task rows, counter rows, the job index, validation listings, progress, rejected events.

The one package that talks to azure-data-tables (docs/design.md, "How exactly-once works"). Callers use
the ``CountsStore`` facade (``facade``); behind it:

- per table, its reads and writes: ``tasks`` (task and counter rows, the ETag-guarded write path,
  sweeps; ``kept`` the rows a batch read, ``partitions`` a table per job partition), ``jobs`` (the
  job index, sync positions, leases), ``scans`` (validation listings), ``history`` (progress
  points), ``rejected``, ``watches`` (watched jobs);
- pure: the row codecs, one per table (``codec``), the records they decode to (``records``), the
  sweep decision (``reconcile``), resharding's protocol (``resharding.protocol``; its mover is ``resharding.mover``);
- plumbing: ``tables`` (clients, resends, errors, batched and range reads), ``transactions`` (the
  write path's ``$batch``, built by hand), ``queries`` (a sweep's partition stream, decoded by
  hand), ``recent`` (recent reads a poll is answered from).
"""

from __future__ import annotations

from shared.clients import PerLoop
from shared.config import Settings
from shared.store.codec.rejected import raw_text_of
from shared.store.codec.tasks import COUNTER_ROW, partition_key
from shared.store.facade import CountsStore
from shared.store.records import (
    ApplyOutcome,
    BatchReported,
    JobCounts,
    JobRecord,
    Observation,
    Observed,
    SyncPosition,
)
from shared.store.resharding.protocol import shard_of
from shared.store.tables import DEVELOPMENT_STORAGE

__all__ = [
    "COUNTER_ROW",
    "DEVELOPMENT_STORAGE",
    "ApplyOutcome",
    "BatchReported",
    "CountsStore",
    "JobCounts",
    "JobRecord",
    "Observation",
    "Observed",
    "SyncPosition",
    "close_store",
    "get_store",
    "partition_key",
    "raw_text_of",
    "shard_of",
]

_stores: PerLoop[CountsStore] = PerLoop()


def get_store(settings: Settings) -> CountsStore:
    """The process's store for the running event loop: clients and connections are reused. With a
    Batch account configured, a job seen for the first time is sized by Batch's own count of its
    tasks (one Get Task Counts call)."""

    def build() -> CountsStore:
        default = settings.accounts.default
        if default is None or not default.url:
            return CountsStore.from_settings(settings)
        from shared.batch import get_batch

        return CountsStore.from_settings(
            settings, lambda account, job_id: get_batch(settings, account).job_size(job_id)
        )

    return _stores.get(build)


async def close_store() -> None:
    """Close the running loop's store (host shutdown, end of a test session)."""
    await _stores.close()
