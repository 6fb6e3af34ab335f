"""Orchestrator: shared.validation.workflow.validate_job, run by Durable Functions (deterministic, replayed)."""

import azure.durable_functions as df

from shared.validation import workflow

main = df.Orchestrator.create(workflow.validate_job)
