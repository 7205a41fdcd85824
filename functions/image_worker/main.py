"""The `image_worker` function: face analysis from the `image-analysis` queue."""

from __future__ import annotations

from shared.platform.tasks import TaskContext, task_worker
from shared.social import photos


@task_worker(photos.AnalysisTask)
def image_worker(payload: photos.AnalysisTask, context: TaskContext) -> None:
    """Analyse one profile picture object (skips stale or already analysed ones)."""
    from shared.social import faces

    faces.analyze_profile_object(payload.userId, payload.bucket, payload.blob, payload.generation)
