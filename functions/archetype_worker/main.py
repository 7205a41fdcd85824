"""The `archetype_worker` function: LinkedIn augmentation tasks from `archetype-generation`."""

from __future__ import annotations

from shared.platform.config import get_settings
from shared.platform.tasks import TaskContext, task_worker
from shared.social import augment

# Production refuses to start when the model's provider has no credentials.
get_settings().archetype_llm()


@task_worker(augment.AugmentTask)
def archetype_worker(payload: augment.AugmentTask, context: TaskContext) -> None:
    """Enrich the user or make one contact's archetype (idempotent under task retries)."""
    augment.run_task(payload, context)
