"""The `agent_worker` function: composes and sends iMessage replies from `agent-replies`."""

from __future__ import annotations

from shared.platform.tasks import TaskContext, task_worker
from shared.social import imessage


@task_worker(imessage.AgentTask)
def agent_worker(payload: imessage.AgentTask, context: TaskContext) -> None:
    """Answer one conversation generation, or notify a referrer (idempotent under retries)."""
    imessage.run(payload)
