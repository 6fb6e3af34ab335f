"""A Batch REST simulator (local tool, not deployed): the subset taskcounts uses, faithful enough
for the real azure-batch SDK, plus a control surface that drives jobs and publishes task-state
events to a webhook with faults (drops, duplicates, reordering, delay)."""
