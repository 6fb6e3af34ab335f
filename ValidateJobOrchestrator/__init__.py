"""Orchestrator: shared.workflow.validate_job, run by Durable Functions (deterministic, replayed)."""

import azure.durable_functions as df

from shared import workflow

main = df.Orchestrator.create(workflow.validate_job)
