"""Profile pictures: uploads that become the picture, picture changes and face analysis.

Objects are checked and stored by `shared.social.photos`; the profile's
`profilePic` and `metadata.picture_data` are written through
`shared.social.user_store`; faces are found by `shared.social.faces`
(imported only where analysis runs: it loads OpenCV).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.platform import clients
from shared.platform.auth import Principal, require_self_or_admin
from shared.platform.config import get_settings
from shared.platform.errors import NotFound
from shared.social import photos, user_store
from shared.social.profile_types import ObjectRef, PictureData

if TYPE_CHECKING:
    from google.cloud.storage import Blob

logger = logging.getLogger(__name__)


def upload_photo(
    principal: Principal, for_user: str | None, file_name: str | None, data: bytes
) -> photos.UploadResult:
    """Store a photo; for an existing user it becomes the picture and its analysis is queued.

    A phone-signed-in caller without a user yet gets a pending upload that
    `POST /users` adopts.

    Raises:
        InvalidInput: Bad file name, not an image, or too many pixels.
        PayloadTooLarge: Over `MAX_UPLOAD_BYTES`.
        Forbidden: `user_id` is someone else's.
        NotFound: `user_id` has no profile.
    """
    user_id = for_user or principal.user_id
    if user_id is not None:
        require_self_or_admin(principal, user_id)
        if not user_store.exists(user_id):
            if for_user:
                raise NotFound("User not found")
            user_id = None
    ref, generation = photos.store_upload(principal, user_id, file_name, data)
    if user_id is None:
        return photos.UploadResult(image_url=ref.proxy_url, analysis="pending_profile")
    _show(user_id, ref, generation)
    return photos.UploadResult(image_url=ref.proxy_url, analysis="queued")


def _show(user_id: str, ref: ObjectRef, generation: int | None) -> None:
    user_store.set_picture(user_id, ref.proxy_url)
    photos.enqueue_analysis(user_id, ref, generation)


def update_profile_picture(
    principal: Principal, user_id: str, image_url: str
) -> photos.ProfilePictureSet:
    """Make one of the user's cleaned images their picture and queue its analysis.

    Raises:
        Forbidden: Not the caller's user, or not the user's image.
        InvalidInput: Not one of our images.
        NotFound: No such image or user.
        Conflict: The image is still being cleaned.
    """
    ref, blob = photos.users_image(principal, user_id, image_url)
    _show(user_id, ref, blob.generation)
    return photos.ProfilePictureSet(profilePic=ref.proxy_url)


def analyze_face(principal: Principal, user_id: str, image_url: str) -> photos.AnalyzeResult:
    """Analyse one of the user's images now (large ones are queued instead).

    When the image is the user's profile picture, the result is stored in
    `metadata.picture_data` (once per object generation).

    Raises:
        Forbidden: Not the caller's user or image.
        InvalidInput: Not one of our images.
        NotFound: No such image or user.
        Conflict: The image is still being cleaned.
    """
    from shared.social import faces

    ref, blob = photos.users_image(principal, user_id, image_url)
    if (blob.size or 0) > get_settings().analyze_inline_max_bytes:
        photos.enqueue_analysis(user_id, ref, blob.generation)
        return photos.AnalyzeResult(status="queued")
    record = user_store.load(user_id)
    if record.get("profilePic") != ref.proxy_url:
        result = faces.analyze_image(blob.download_as_bytes(**clients.storage_call()))
        return photos.AnalyzeResult(status="analyzed", picture_data=result)
    stored = analyze_profile_object(user_id, ref, blob.generation, blob)
    if stored is None:
        stored = (user_store.load(user_id).get("metadata") or {}).get("picture_data")
    return photos.AnalyzeResult(status="analyzed", picture_data=stored)


def analyze_profile_object(
    user_id: str, ref: ObjectRef, generation: int | None, blob: Blob | None = None
) -> PictureData | None:
    """Analyse a user's picture object and store `metadata.picture_data` once per generation.

    Skips (returns None) when the user no longer shows this object, when the
    object changed, vanished or is not cleaned, or when this generation was
    already analysed.

    Raises:
        NotFound: No such user.
    """
    from shared.social import faces

    record = user_store.load(user_id)
    key = f"{ref.bucket}/{ref.blob}#{generation or 0}"
    if record.get("profilePic") != ref.proxy_url or user_store.analysed_object(record) == key:
        logger.info("face analysis skipped: not the current picture", extra={"object": key})
        return None
    if blob is None:
        blob = clients.storage().bucket(ref.bucket).get_blob(ref.blob, **clients.storage_call())
    stale = blob is None or (generation is not None and blob.generation != generation)
    if stale or not photos.is_cleaned(blob):
        logger.info("face analysis skipped: object replaced or not cleaned", extra={"object": key})
        return None
    result = faces.analyze_image(blob.download_as_bytes(**clients.storage_call()))
    return user_store.store_picture_analysis(user_id, ref.proxy_url, key, result)
