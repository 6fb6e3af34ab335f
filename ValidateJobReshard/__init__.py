"""Validation activity: move one partition's rows that belong to the job's new partitions."""

from shared import validation

main = validation.activity(validation.reshard)
