"""Validation activity: keep a few List Tasks pages of one slice for the sweeps."""

from shared import validation

main = validation.activity(validation.list_pages)
