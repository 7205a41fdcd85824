"""The `image_worker` function: face analysis from the `image-analysis` queue."""

from __future__ import annotations

from shared.platform.tasks import TaskContext, task_worker
from shared.social import photos, pictures
from shared.social.profile_types import ObjectRef


@task_worker(photos.AnalysisTask)
def image_worker(payload: photos.AnalysisTask, context: TaskContext) -> None:
    """Analyse one profile picture object (skips stale or already analysed ones)."""
    pictures.analyze_profile_object(
        payload.userId, ObjectRef(payload.bucket, payload.blob), payload.generation
    )
