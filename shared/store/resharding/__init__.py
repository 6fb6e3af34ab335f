"""Resharding: moving a job's rows to more partitions while deliveries, reads and sweeps go on.

- ``protocol``: pure -- how many partitions a job should have and the target a pass grows it to,
  the counter rows' marks, where a task of a sealed partition is followed, and which counts a
  reader took twice while a batch was in flight (``counted_twice``).
- ``mover``: the I/O -- sealing a partition and moving its rows, batch by batch, under ETags.

Who takes part: the write path (``shared.store.tasks``) follows seals and waits on batches in
flight, and reads a job's counter rows in rounds; the job index (``shared.store.jobs``) records a
reshard begun and finished; validation's ``begin`` asks for the target and starts the movers.
"""
