"""Sub-orchestrator: shared.validation.workflow.list_slices, one round of a job's listing (deterministic, replayed)."""

import azure.durable_functions as df

from shared.validation import workflow

main = df.Orchestrator.create(workflow.list_slices)
