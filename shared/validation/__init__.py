"""Validation: reconciling the store with Batch's List Tasks, job by job.

- ``workflow``: the orchestrations, pure and deterministic (no I/O, clock or environment).
- ``payloads``: what the Durable steps hand each other, typed, with their JSON in one place.
- ``activities``: the steps that read Batch and write the store (begin, list pages, sweep, finish,
  reshard, remove).
- ``scheduling``: which jobs a scheduled pass validates or removes.
- ``passes``: the Durable client side (the timer's pass, the on-demand route and its status).
"""
