"""Validation activity: reconcile one partition with the scan's listing."""

from shared import validation

main = validation.activity(validation.sweep)
