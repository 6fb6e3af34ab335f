"""Orchestrator: shared.validation.workflow.remove_jobs, the scheduled pass's clean-up (deterministic, replayed)."""

import azure.durable_functions as df

from shared.validation import workflow

main = df.Orchestrator.create(workflow.remove_jobs)
