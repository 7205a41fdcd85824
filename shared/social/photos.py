"""Profile photos: uploads, object ownership, signed URLs and serving.

Objects live in the profiles bucket under `profiles/{userId}/{uuid}.{ext}`;
a phone-signed-in caller without a user yet uploads under
`pending/{key}/...` (the key derives from their session), and `POST /users`
adopts that object. Uploads are checked by content (JPEG, PNG, WebP, HEIC
magic bytes, then a full decode with Pillow), limited in size, and
re-encoded so no metadata (EXIF GPS included) survives. The URL clients get
is `/storage/profile-image/{bucket}/{blob}`, which streams public profile
photos; signed URLs work with a local key (emulators) or IAM signBlob.

Only cleaned objects (metadata `cleaned: "1"`, set by this module after the
re-encode) are served or accepted as pictures: an object that arrived by
signed URL is cleaned by the finalize handler first. Images larger than
`MAX_IMAGE_PIXELS` are refused from their header, before decoding.

This module owns the objects; profile documents are written by
`shared.social.pictures` through `shared.social.user_store`.
"""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pydantic import ConfigDict, Field

from shared.platform import clients, tasks
from shared.platform.auth import Principal, require_self_or_admin
from shared.platform.config import get_settings
from shared.platform.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from shared.platform.models import Model
from shared.platform.values import DocId
from shared.social.profile_types import PROXY_PREFIX, ObjectRef

if TYPE_CHECKING:
    from google.cloud.storage import Blob

IMAGE_QUEUE = "image-analysis"
IMAGE_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "heic": "image/heic"}
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_NOT_OURS = "image_url must be one of our uploaded images"
_SAFE_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")
CLEANED = {"cleaned": "1"}


class UploadForm(Model):
    """The non-file fields of an upload."""

    model_config = ConfigDict(extra="forbid")

    user_id: DocId | None = None
    bypass_auth: str | None = Field(
        default=None, max_length=16, description="Accepted for compatibility and ignored."
    )


class UploadResult(Model):
    """What an upload returns."""

    success: bool = True
    image_url: str
    analysis: str


class ProfilePictureForm(Model):
    """`user_id` and `image_url` form fields."""

    model_config = ConfigDict(extra="forbid")

    user_id: DocId
    image_url: str = Field(min_length=1, max_length=2048)


class ProfilePictureSet(Model):
    """The new profile picture, whose analysis is queued."""

    success: bool = True
    profilePic: str  # noqa: N815 - seed field name
    analysis: str = "queued"


class SignedUrlRequest(Model):
    """What the client wants to upload."""

    model_config = ConfigDict(extra="forbid")

    fileName: str = Field(min_length=1, max_length=255)  # noqa: N815 - seed field name
    contentType: str = Field(min_length=1, max_length=100)  # noqa: N815 - seed field name
    bucketName: str = Field(default="series-v1-profiles", max_length=222)  # noqa: N815


class SignedUrlResponse(Model):
    """A V4 signed PUT URL and the object's public URL."""

    signedUrl: str  # noqa: N815 - seed field name
    publicUrl: str  # noqa: N815 - seed field name
    objectName: str  # noqa: N815 - API field name


class UrlResponse(Model):
    """A URL for an object."""

    url: str
    expiresIn: int  # noqa: N815 - API field name


class AnalysisTask(Model):
    """The `image-analysis` task body."""

    userId: str  # noqa: N815
    bucket: str
    blob: str
    generation: int | None = None


def owner_prefixes(principal: Principal) -> list[str]:
    """The object prefixes a caller owns."""
    prefixes = [f"pending/{principal.subject[:32]}/"]
    if principal.user_id:
        prefixes.append(f"profiles/{principal.user_id}/")
    return prefixes


def sniff(data: bytes) -> str | None:
    """Tell the image format from its first bytes (JPEG, PNG, WebP, HEIC), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "heic"
    return None


def _check_file_name(name: str, loc: tuple[str, ...]) -> None:
    if not _SAFE_NAME.match(name) or ".." in name:
        raise InvalidInput("Invalid file name", loc=loc)


def clean_image(data: bytes) -> tuple[bytes, str, str]:
    """Check an upload by content and re-encode it without metadata.

    HEIC becomes JPEG (browsers cannot show HEIC); the EXIF orientation is
    applied before the metadata is dropped.

    Args:
        data: The uploaded bytes.

    Returns:
        The clean bytes, their content type and file extension.

    Raises:
        InvalidInput: Not a JPEG, PNG, WebP or HEIC image, or not decodable.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    kind = sniff(data)
    if kind is None:
        raise InvalidInput("File must be a JPEG, PNG, WebP or HEIC image", loc=("body", "file"))
    if kind == "heic":
        from pillow_heif import register_heif_opener

        register_heif_opener()
    limit = get_settings().max_image_pixels
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > limit:
                raise InvalidInput(f"The image is larger than {limit} pixels", loc=("body", "file"))
            image.load()
            upright = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput("The image could not be decoded", loc=("body", "file")) from exc
    output_kind = "jpeg" if kind == "heic" else kind
    if output_kind == "jpeg" and upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    buffer = io.BytesIO()
    upright.save(buffer, format=output_kind.upper(), quality=90)
    return buffer.getvalue(), IMAGE_TYPES[output_kind], _EXTENSIONS[output_kind]


def store_upload(
    principal: Principal, user_id: str | None, file_name: str | None, data: bytes
) -> tuple[ObjectRef, int | None]:
    """Check, clean and store an uploaded photo under the user's (or the caller's pending) prefix.

    Args:
        principal: The caller.
        user_id: The user the photo is for (the caller, or anyone for admins); None
            for a phone-signed-in caller without a user yet.
        file_name: The name the client gave the file.
        data: The uploaded bytes.

    Returns:
        The stored object and its generation.

    Raises:
        InvalidInput: Bad file name, not an image, or too many pixels.
        PayloadTooLarge: Over `MAX_UPLOAD_BYTES`.
        Forbidden: `user_id` is someone else's.
    """
    if file_name is not None:
        _check_file_name(file_name, ("body", "file"))
    limit = get_settings().max_upload_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"File exceeds {limit} bytes")
    if user_id is not None:
        require_self_or_admin(principal, user_id)
    clean, content_type, extension = clean_image(data)
    prefix = f"profiles/{user_id}/" if user_id else owner_prefixes(principal)[0]
    ref = ObjectRef(get_settings().profiles_bucket, f"{prefix}{uuid.uuid4().hex}.{extension}")
    blob = clients.storage().bucket(ref.bucket).blob(ref.blob)
    blob.cache_control = "public, max-age=3600"
    blob.metadata = CLEANED
    blob.upload_from_string(clean, content_type=content_type, **clients.storage_call(retried=False))
    return ref, blob.generation


def enqueue_analysis(user_id: str, ref: ObjectRef, generation: int | None) -> None:
    """Queue face analysis of an object (once per object generation)."""
    payload = AnalysisTask(userId=user_id, bucket=ref.bucket, blob=ref.blob, generation=generation)
    tasks.enqueue(
        IMAGE_QUEUE, payload, dedup_name=f"face-{ref.bucket}/{ref.blob}#{generation or 0}"
    )


def parse_image_url(url: str) -> ObjectRef:
    """Find our object behind an image URL.

    Accepts the proxy URL (absolute or not), `gs://bucket/blob` and
    `https://storage.googleapis.com/bucket/blob`.

    Raises:
        InvalidInput: The URL does not name an object of our profiles bucket.
    """
    parsed = urlparse(url)
    if parsed.scheme == "gs":
        bucket, blob = parsed.netloc, parsed.path.lstrip("/")
    elif parsed.path.startswith(PROXY_PREFIX):
        bucket, _, blob = parsed.path[len(PROXY_PREFIX) :].partition("/")
    elif parsed.netloc == "storage.googleapis.com":
        bucket, _, blob = parsed.path.lstrip("/").partition("/")
    else:
        raise InvalidInput(
            "image_url must be one of our uploaded images", loc=("body", "image_url")
        )
    blob = unquote(blob)
    if bucket != get_settings().profiles_bucket or not blob or ".." in blob.split("/"):
        raise InvalidInput(
            "image_url must be one of our uploaded images", loc=("body", "image_url")
        )
    return ObjectRef(bucket, blob)


def require_owned(principal: Principal, ref: ObjectRef, user_id: str | None = None) -> None:
    """Allow only objects under the caller's (or, for admins, the target user's) prefix.

    Raises:
        Forbidden: Someone else's object.
    """
    prefixes = owner_prefixes(principal)
    if principal.is_admin and user_id:
        prefixes.append(f"profiles/{user_id}/")
    if not any(ref.blob.startswith(prefix) for prefix in prefixes):
        raise Forbidden("Not allowed to use this image")


def existing_blob(ref: ObjectRef) -> Blob:
    """Return an object's metadata.

    Raises:
        NotFound: No such object.
    """
    blob = clients.storage().bucket(ref.bucket).get_blob(ref.blob, **clients.storage_call())
    if blob is None:
        raise NotFound("Image not found")
    return blob


def is_cleaned(blob: Blob) -> bool:
    """Whether an object was re-encoded by us (and so carries no client metadata)."""
    return (blob.metadata or {}).get("cleaned") == CLEANED["cleaned"]


def users_image(principal: Principal, user_id: str, image_url: str) -> tuple[ObjectRef, Blob]:
    """Resolve an image URL to a cleaned object of the user, for the user or an admin.

    Raises:
        Forbidden: Not the caller's user, or not the user's image.
        InvalidInput: Not one of our images.
        NotFound: No such image.
        Conflict: The image is still being cleaned.
    """
    require_self_or_admin(principal, user_id)
    ref = parse_image_url(image_url)
    if not ref.blob.startswith(f"profiles/{user_id}/"):
        raise Forbidden("Not allowed to use this image")
    blob = existing_blob(ref)
    if not is_cleaned(blob):
        raise Conflict("The image is still being processed; retry shortly")
    return ref, blob


def pending_upload(principal: Principal, user_id: str, profile_pic: str) -> ObjectRef:
    """Check a new user's picture: a cleaned image of the caller's (pending or the user's own).

    Returns:
        The object; a pending one is adopted once the user exists.

    Raises:
        InvalidInput: Not one of our images.
        Forbidden: One of our images that is not the caller's.
        NotFound: No such image.
        Conflict: The image is still being cleaned.
    """
    ref = parse_image_url(profile_pic)
    require_owned(principal, ref, user_id)
    if not is_cleaned(existing_blob(ref)):
        raise Conflict("The image is still being processed; retry shortly")
    return ref


def adopt_pending(user_id: str, ref: ObjectRef) -> tuple[ObjectRef, int | None]:
    """Copy a pending upload under the new user's prefix (a user's own image stays).

    Returns:
        The user's object and its generation.
    """
    if not ref.blob.startswith("pending/"):
        return ref, existing_blob(ref).generation
    bucket = clients.storage().bucket(ref.bucket)
    source = existing_blob(ref)
    target = ObjectRef(ref.bucket, f"profiles/{user_id}/{ref.blob.rsplit('/', 1)[-1]}")
    copied = bucket.copy_blob(source, bucket, target.blob, **clients.storage_call())
    return target, copied.generation


def delete_object(ref: ObjectRef) -> None:
    """Delete an object if it still exists."""
    from google.api_core import exceptions as google_exceptions

    with contextlib.suppress(google_exceptions.NotFound):
        clients.storage().bucket(ref.bucket).blob(ref.blob).delete(**clients.storage_call())


def signed_upload_url(principal: Principal, request: SignedUrlRequest) -> SignedUrlResponse:
    """Issue a V4 signed PUT URL for a new object under the caller's prefix.

    Raises:
        Forbidden: The bucket is not allow-listed.
        InvalidInput: Not an image content type, or an unsafe file name.
    """
    if request.bucketName != get_settings().profiles_bucket:
        raise Forbidden("Bucket not allowed")
    extension = {v: _EXTENSIONS.get(k, k) for k, v in IMAGE_TYPES.items()}.get(request.contentType)
    if extension is None:
        raise InvalidInput("contentType must be an image type", loc=("body", "contentType"))
    _check_file_name(request.fileName, ("body", "fileName"))
    prefix = owner_prefixes(principal)[-1]
    ref = ObjectRef(request.bucketName, f"{prefix}{uuid.uuid4().hex}.{extension}")
    url = _sign(
        ref, "PUT", timedelta(minutes=get_settings().signed_url_minutes), request.contentType
    )
    return SignedUrlResponse(signedUrl=url, publicUrl=ref.proxy_url, objectName=ref.blob)


def signed_read_url(principal: Principal, ref: ObjectRef, lifetime: timedelta) -> UrlResponse:
    """Issue a signed GET URL for an object the caller owns.

    Raises:
        Forbidden: Not the caller's object.
        NotFound: No such object.
    """
    require_owned(principal, ref)
    existing_blob(ref)
    return UrlResponse(url=_sign(ref, "GET", lifetime), expiresIn=int(lifetime.total_seconds()))


def _sign(ref: ObjectRef, method: str, lifetime: timedelta, content_type: str | None = None) -> str:
    settings = get_settings()
    blob = clients.storage().bucket(ref.bucket).blob(ref.blob)
    options: dict[str, Any] = {
        "version": "v4",
        "expiration": lifetime,
        "method": method,
        "content_type": content_type,
    }
    if settings.signing_credentials_file:
        from google.oauth2 import service_account

        options["credentials"] = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            settings.signing_credentials_file
        )
        options["api_access_endpoint"] = settings.storage_emulator_host
    else:
        import google.auth
        import google.auth.transport.requests

        credentials, _ = google.auth.default()
        credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
        options["service_account_email"] = settings.signing_service_account or getattr(
            credentials, "service_account_email", None
        )
        options["access_token"] = credentials.token
    return str(blob.generate_signed_url(**options))


def profile_image(ref: ObjectRef) -> tuple[bytes, str, str | None]:
    """Return a public profile photo's bytes, content type and ETag.

    Raises:
        NotFound: Not a profile photo of our bucket, or missing.
    """
    if ref.bucket != get_settings().profiles_bucket or not ref.blob.startswith("profiles/"):
        raise NotFound("Image not found")
    blob = existing_blob(ref)
    if not is_cleaned(blob):
        raise NotFound("Image not found")
    data = blob.download_as_bytes(**clients.storage_call())
    return data, blob.content_type or "application/octet-stream", blob.etag


class AnalyzeQuery(Model):
    """`?user_id=&image_url=`."""

    model_config = ConfigDict(extra="forbid")

    user_id: DocId
    image_url: str = Field(min_length=1, max_length=2048)


class AnalyzeResult(Model):
    """The outcome of `analyze-face`."""

    status: str
    picture_data: Any = None


def clean_finalized_object(bucket_name: str, name: str, metadata: dict[str, str] | None) -> None:
    """Handle an object that landed in the profiles bucket (by signed URL).

    A new object under `profiles/{userId}/` or `pending/{key}/` is checked
    and re-encoded in place (marked `cleaned`); the cleaned version's own
    finalize event then queues the analysis of a profile object. Anything
    else is left alone; an object that is not an image is deleted.
    """
    import logging

    top = name.split("/", 1)[0]
    if bucket_name != get_settings().profiles_bucket or top not in ("profiles", "pending"):
        return
    ref = ObjectRef(bucket_name, name)
    blob = clients.storage().bucket(bucket_name).get_blob(name, **clients.storage_call())
    if blob is None:
        return
    if (metadata or {}).get("cleaned") == CLEANED["cleaned"]:
        if top == "profiles":
            enqueue_analysis(name.split("/")[1], ref, blob.generation)
        return
    try:
        clean, content_type, _ = clean_image(blob.download_as_bytes(**clients.storage_call()))
    except InvalidInput:
        logging.getLogger(__name__).warning("deleting a non-image upload", extra={"object": name})
        blob.delete(**clients.storage_call())
        return
    blob.metadata = CLEANED
    blob.cache_control = "public, max-age=3600"
    blob.upload_from_string(clean, content_type=content_type, **clients.storage_call(retried=False))


def user_prefixes(user_id: str, pending_keys: list[str]) -> list[str]:
    """Every object prefix holding a user's photos: their own, and their pending uploads.

    Args:
        user_id: The user.
        pending_keys: The subjects of their phone sessions (stored token hashes).
    """
    keys = {user_id[:32], *(key[:32] for key in pending_keys)}
    return [f"profiles/{user_id}/", *(f"pending/{key}/" for key in sorted(keys))]


def delete_user_data(user_id: str, pending_keys: list[str]) -> None:
    """Delete every object of a user in the profiles bucket (re-runnable)."""
    bucket = clients.storage().bucket(get_settings().profiles_bucket)
    for prefix in user_prefixes(user_id, pending_keys):
        for blob in bucket.list_blobs(prefix=prefix, **clients.storage_call()):
            delete_object(ObjectRef(bucket.name, blob.name))


def export_user_data(user_id: str, pending_keys: list[str], limit: int) -> list[dict[str, Any]]:
    """Return a user's stored photos, each with a signed GET URL (`SIGNED_URL_MINUTES`)."""
    settings = get_settings()
    bucket = clients.storage().bucket(settings.profiles_bucket)
    lifetime = timedelta(minutes=settings.signed_url_minutes)
    exported = []
    for prefix in user_prefixes(user_id, pending_keys):
        for blob in bucket.list_blobs(prefix=prefix, max_results=limit, **clients.storage_call()):
            ref = ObjectRef(bucket.name, blob.name)
            exported.append(
                {
                    "object": blob.name,
                    "contentType": blob.content_type,
                    "size": blob.size,
                    "created": blob.time_created,
                    "url": _sign(ref, "GET", lifetime),
                    "expiresIn": int(lifetime.total_seconds()),
                }
            )
    return exported[:limit]
