"""The `photo_finalized` function: Cloud Storage object-finalized events of the profiles bucket."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from shared.platform import coldstart
from shared.platform.logging import configure_logging
from shared.social import photos

configure_logging()


@functions_framework.cloud_event
@coldstart.entry_point
def photo_finalized(event: CloudEvent) -> None:
    """Clean a photo uploaded by signed URL, then queue its analysis."""
    data = event.data or {}
    photos.clean_finalized_object(
        data.get("bucket", ""), data.get("name", ""), data.get("metadata")
    )
