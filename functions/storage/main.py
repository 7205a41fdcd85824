"""The `storage` function: photo uploads, profile pictures, signed URLs, image serving.

Face analysis libraries load only inside `POST /users/analyze-face`.
"""

from __future__ import annotations

from datetime import timedelta

import flask

from shared.platform.config import get_settings
from shared.platform.errors import InvalidInput
from shared.platform.http import RequestContext, Router, http_function
from shared.social import photos, pictures
from shared.social.profile_types import ObjectRef

router = Router("storage")
_UPLOAD_LIMIT = 11 * 1024 * 1024  # the file limit (MAX_UPLOAD_BYTES) plus form overhead


def _upload(ctx: RequestContext, form: photos.UploadForm) -> photos.UploadResult:
    """Store a profile photo (checked by content, re-encoded) and queue its analysis."""
    upload = ctx.request.files["file"]
    if upload.filename is None:
        raise InvalidInput("file is required", loc=("body", "file"))
    data = upload.stream.read(get_settings().max_upload_bytes + 1)
    return pictures.upload_photo(ctx.user, form.user_id, upload.filename, data)


for _path in ("/storage/upload-photo", "/users/upload-photo"):
    router.post(
        _path,
        auth="user",
        summary="Upload Photo",
        form=photos.UploadForm,
        files=("file",),
        response=photos.UploadResult,
        max_body_bytes=_UPLOAD_LIMIT,
        responses={403: "Forbidden", 404: "Not Found", 413: "Payload Too Large"},
    )(_upload)


def _update_profile_picture(
    ctx: RequestContext, form: photos.ProfilePictureForm
) -> photos.ProfilePictureSet:
    """Make one of the user's images their profile picture and queue its analysis."""
    return pictures.update_profile_picture(ctx.user, form.user_id, form.image_url)


for _path in ("/storage/update-profile-picture", "/users/update-profile-picture"):
    router.post(
        _path,
        auth="user",
        summary="Update Profile Picture",
        form=photos.ProfilePictureForm,
        response=photos.ProfilePictureSet,
        responses={403: "Forbidden", 404: "Not Found", 409: "Conflict"},
    )(_update_profile_picture)


@router.post(
    "/users/analyze-face",
    auth="user",
    summary="Analyze Face",
    query=photos.AnalyzeQuery,
    response=photos.AnalyzeResult,
    responses={403: "Forbidden", 404: "Not Found", 409: "Conflict"},
)
def analyze_face(ctx: RequestContext, query: photos.AnalyzeQuery) -> photos.AnalyzeResult:
    """Analyse a profile photo now (queued when large) and return the result."""
    return pictures.analyze_face(ctx.user, query.user_id, query.image_url)


@router.post(
    "/storage/signed-url",
    auth="user",
    summary="Get Signed Url",
    body=photos.SignedUrlRequest,
    response=photos.SignedUrlResponse,
    responses={403: "Forbidden"},
)
def signed_url(ctx: RequestContext, body: photos.SignedUrlRequest) -> photos.SignedUrlResponse:
    """A V4 signed PUT URL for a new image under the caller's prefix."""
    return photos.signed_upload_url(ctx.user, body)


@router.get(
    "/storage/authenticated-url/{bucket_name}/{blob_name:path}",
    auth="user",
    summary="Get Authenticated Url",
    response=photos.UrlResponse,
    responses={403: "Forbidden", 404: "Not Found"},
)
def authenticated_url(ctx: RequestContext, bucket_name: str, blob_name: str) -> photos.UrlResponse:
    """A signed GET URL valid `SIGNED_URL_MINUTES` for one of the caller's objects."""
    ref = ObjectRef(bucket_name, blob_name)
    return photos.signed_read_url(
        ctx.user, ref, timedelta(minutes=get_settings().signed_url_minutes)
    )


@router.get(
    "/storage/permanent-url/{bucket_name}/{blob_name:path}",
    auth="user",
    summary="Get Permanent Url",
    response=photos.UrlResponse,
    responses={403: "Forbidden", 404: "Not Found"},
)
def permanent_url(ctx: RequestContext, bucket_name: str, blob_name: str) -> photos.UrlResponse:
    """A signed GET URL valid 7 days (the V4 maximum) for one of the caller's objects."""
    return photos.signed_read_url(ctx.user, ObjectRef(bucket_name, blob_name), timedelta(days=7))


@router.get(
    "/storage/profile-image/{bucket_name}/{blob_name:path}",
    auth="none",
    summary="Get Profile Image",
    responses={404: "Not Found"},
)
def profile_image(ctx: RequestContext, bucket_name: str, blob_name: str) -> flask.Response:
    """Stream a public profile photo with its content type and cache headers."""
    data, content_type, etag = photos.profile_image(ObjectRef(bucket_name, blob_name))
    response = flask.Response(data, mimetype=content_type)
    response.headers["Cache-Control"] = "public, max-age=3600"
    if etag:
        response.headers["ETag"] = f'"{etag}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


storage = http_function(router)
