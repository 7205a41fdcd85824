"""Types shared by the profile, photo and face modules (a leaf: imports no domain module)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.platform.models import Model

PROXY_PREFIX = "/storage/profile-image/"


class Label(Model):
    """A predicted label with its confidence."""

    label: str
    confidence: float


class PictureData(Model):
    """Face analysis of the profile picture."""

    face_detected: bool = False
    gender: Label | None = None
    race: Label | None = None
    analyzed_at: datetime | None = None
    error: str | None = None
    region: dict[str, int] | None = None  # the face box in pixels: x, y, w, h
    missing_attributes: list[str] | None = None  # configured attributes without model weights


@dataclass(frozen=True)
class ObjectRef:
    """A bucket and an object name."""

    bucket: str
    blob: str

    @property
    def proxy_url(self) -> str:
        """The URL clients use to show the object."""
        return f"{PROXY_PREFIX}{self.bucket}/{self.blob}"
