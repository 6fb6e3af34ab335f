"""Validation activity: choose the jobs to validate and the jobs to clean up."""
from shared import validation

main = validation.activity(validation.select_jobs)
