"""The `agent_worker` function: composes and sends iMessage replies from `agent-replies`."""

from __future__ import annotations

from shared.platform.tasks import TaskContext, task_worker
from shared.social import imessage


@task_worker(imessage.ReplyTask)
def agent_worker(payload: imessage.ReplyTask, context: TaskContext) -> None:
    """Answer one conversation generation (idempotent under task retries)."""
    imessage.reply(payload)
