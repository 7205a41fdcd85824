"""The `chat_worker` function: runs chat tickets from the `chat-tickets` queue."""

from __future__ import annotations

from shared.agents import chat as chats
from shared.platform.tasks import TaskContext, task_worker


@task_worker(chats.TicketPayload)
def chat_worker(payload: chats.TicketPayload, context: TaskContext) -> None:
    """Run one ticket (idempotent under task retries)."""
    chats.run_ticket(payload.ticketId)
