"""Validation activity: move one partition's rows that belong to the job's new partitions."""

from shared.validation import activities

main = activities.activity(activities.reshard)
