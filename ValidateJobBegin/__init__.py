"""Validation activity: check a job's size and open a scan."""

from shared.validation import activities

main = activities.activity(activities.begin)
