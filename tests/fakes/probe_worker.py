"""A Cloud Tasks worker used to test the task platform end to end.

It is served by the test gateway at `/_functions/probe_worker` and records
each task it runs in `probe_runs/{marker}`.
"""

from __future__ import annotations

from pydantic import BaseModel

from shared.platform import clients
from shared.platform.tasks import TaskContext, task_worker


class ProbePayload(BaseModel):
    marker: str


@task_worker(ProbePayload)
def probe_worker(payload: ProbePayload, context: TaskContext) -> None:
    clients.firestore().collection("probe_runs").document(payload.marker).set(
        {"queue": context.queue, "task": context.task_name}
    )
