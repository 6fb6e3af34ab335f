"""Validation activity: reconcile one partition with the scan's listing."""

from shared.validation import activities

main = activities.activity(activities.sweep)
