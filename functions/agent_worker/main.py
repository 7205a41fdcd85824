"""The `agent_worker` function: composes and sends iMessage replies from `agent-replies`."""

from __future__ import annotations

from shared.platform.config import get_settings
from shared.platform.tasks import TaskContext, task_worker
from shared.social import imessage

# Production refuses to start when the model's provider has no credentials.
get_settings().imessage_llm()


@task_worker(imessage.AgentTask)
def agent_worker(payload: imessage.AgentTask, context: TaskContext) -> None:
    """Answer one conversation generation, or notify a referrer (idempotent under retries)."""
    imessage.run(payload)
