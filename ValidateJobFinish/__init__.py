"""Validation activity: mark the job validated with the drift found."""

from shared.validation import activities

main = activities.activity(activities.finish)
