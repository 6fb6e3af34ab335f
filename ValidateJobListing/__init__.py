"""Sub-orchestrator: shared.workflow.list_slices, one round of a job's listing (deterministic, replayed)."""

import azure.durable_functions as df

from shared import workflow

main = df.Orchestrator.create(workflow.list_slices)
