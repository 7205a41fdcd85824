"""The `deletion_worker` function: account deletion tasks from `account-deletion`."""

from __future__ import annotations

from shared.platform.tasks import TaskContext, task_worker
from shared.privacy import api, worker


@task_worker(api.DeletionTask)
def deletion_worker(payload: api.DeletionTask, context: TaskContext) -> None:
    """Run the next steps of one user's deletion (idempotent under retries and duplicates)."""
    worker.run_task(payload, context)
