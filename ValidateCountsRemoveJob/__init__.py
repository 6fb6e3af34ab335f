"""Validation activity: remove a job Batch no longer has, or one past its retention."""

from shared.validation import activities

main = activities.activity(activities.remove_job)
