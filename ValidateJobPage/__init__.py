"""Validation activity: keep one List Tasks page for the sweeps."""
from shared import validation

main = validation.activity(validation.list_page)
