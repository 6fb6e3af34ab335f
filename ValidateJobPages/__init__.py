"""Validation activity: keep a few List Tasks pages of one slice for the sweeps."""

from shared.validation import activities

main = activities.activity(activities.list_pages)
