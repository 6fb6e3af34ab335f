"""Validation activity: check a job's size and open a scan."""

from shared import validation

main = validation.activity(validation.begin)
