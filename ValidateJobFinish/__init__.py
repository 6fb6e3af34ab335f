"""Validation activity: mark the job validated with the drift found."""

from shared import validation

main = validation.activity(validation.finish)
