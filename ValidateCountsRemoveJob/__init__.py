"""Validation activity: remove a job Batch no longer has, or one past its retention."""

from shared import validation

main = validation.activity(validation.remove_job)
