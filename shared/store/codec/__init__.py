"""The row codecs, pure: how each table's rows look as Table entities, one module per table.

Nothing here does I/O (time comes in as an argument), so every rule of the layout (docs/design.md,
"How exactly-once works") can be tested alone.

- ``tasks``: a job's partitions -- task rows and counter rows (with their reshard marks).
- ``jobs``: the job index -- job rows, validation outcomes, Batch's counts, sync positions, leases,
  and the jobs list's continuation tokens.
- ``listings``: validation's listings -- one shard's part of a listed page, and the scan index.
- ``history``: progress history -- points and each job's head row.
- ``rejected``: rejected events with their raw text.
- ``binary``: cutting bytes into the binary properties an entity can hold.
"""
