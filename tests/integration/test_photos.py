"""Photos, storage URLs and face analysis through the gateway, fake-gcs-server and the queue."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import requests
from PIL import ExifTags, Image

from shared.platform import clients
from tests.integration.helpers import phone_token, random_number, sign_up

BUCKET = "series-v1-profiles"


def jpeg(pixels: np.ndarray | None = None, *, gps: bool = False) -> bytes:
    image = Image.fromarray(
        pixels if pixels is not None else np.full((64, 64, 3), 200, dtype=np.uint8)
    )
    exif = Image.Exif()
    if gps:
        exif[ExifTags.Base.Make] = "TestCam"
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(
            {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (48.0, 51.0, 24.0)}
        )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def astronaut_pixels() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def astronaut() -> bytes:
    return jpeg(astronaut_pixels())


def upload(stack, who, content: bytes, name="photo.jpg", path="/users/upload-photo", **form):
    return requests.post(
        stack.url(path),
        files={"file": (name, content, "image/jpeg")},
        data=form,
        headers=who.headers,
        timeout=30,
    )


def stored_blob(image_url: str):
    name = image_url.split(f"/{BUCKET}/", 1)[1]
    return clients.storage().bucket(BUCKET).get_blob(name)


def wait_picture_data(user_id: str, timeout: float = 60.0) -> dict:
    ref = clients.firestore().collection("users").document(user_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = (ref.get().to_dict() or {}).get("metadata", {}).get("picture_data")
        if data:
            return data
        time.sleep(0.2)
    raise AssertionError("no picture_data")


def test_upload_strips_metadata_and_queues_real_face_analysis(stack):
    alice = sign_up(stack)

    response = upload(stack, alice, astronaut())

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["analysis"] == "queued"
    assert body["image_url"].startswith(
        f"/storage/profile-image/{BUCKET}/profiles/{alice.user_id}/"
    )
    picture = wait_picture_data(alice.user_id)
    assert picture["face_detected"] is True
    assert picture["error"] is None
    assert picture["gender"]["label"] in ("Man", "Woman")
    assert 0 <= picture["gender"]["confidence"] <= 1
    assert picture["race"]["label"]
    profile = requests.get(stack.url(f"/users/{alice.user_id}"), headers=alice.headers, timeout=10)
    assert profile.json()["profilePic"] == body["image_url"]


def test_exif_gps_does_not_survive(stack):
    alice = sign_up(stack)

    response = upload(stack, alice, jpeg(gps=True))

    stored = stored_blob(response.json()["image_url"]).download_as_bytes()
    exif = Image.open(io.BytesIO(stored)).getexif()
    assert ExifTags.Base.Make not in exif
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)


def test_blank_image_reports_no_face(stack):
    alice = sign_up(stack)

    upload(stack, alice, jpeg())

    picture = wait_picture_data(alice.user_id)
    assert picture["face_detected"] is False
    assert picture["error"] == "No face detected"


def test_same_object_is_analysed_once(stack):
    alice = sign_up(stack)
    image_url = upload(stack, alice, jpeg()).json()["image_url"]
    first = wait_picture_data(alice.user_id)

    again = requests.post(
        stack.url("/users/analyze-face"),
        params={"user_id": alice.user_id, "image_url": image_url},
        headers=alice.headers,
        timeout=30,
    )

    assert again.status_code == 200
    stored = clients.firestore().collection("users").document(alice.user_id).get().to_dict()
    assert stored["metadata"]["picture_data"]["analyzed_at"] == first["analyzed_at"]


def test_non_image_renamed_jpg_is_refused(stack):
    alice = sign_up(stack)

    response = upload(stack, alice, b"#!/bin/sh\necho not an image\n" * 20, name="evil.jpg")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


def test_oversized_upload_is_413(stack):
    alice = sign_up(stack)

    response = upload(stack, alice, b"\xff\xd8\xff" + b"0" * (12 * 1024 * 1024))

    assert response.status_code == 413


@pytest.mark.parametrize("name", ["../../etc/passwd.jpg", "a/b.jpg", "..\\x.jpg"])
def test_path_traversal_file_name_is_refused(stack, name):
    alice = sign_up(stack)

    response = upload(stack, alice, jpeg(), name=name)

    assert response.status_code == 422


def test_upload_without_token_is_401_even_with_bypass_auth(stack):
    response = requests.post(
        stack.url("/storage/upload-photo"),
        files={"file": ("p.jpg", jpeg(), "image/jpeg")},
        data={"bypass_auth": "true"},
        timeout=10,
    )

    assert response.status_code == 401


def test_upload_for_another_user_is_403(stack):
    alice, bob = sign_up(stack), sign_up(stack)

    response = upload(stack, alice, jpeg(), user_id=bob.user_id)

    assert response.status_code == 403


def test_another_users_photo_url_is_refused(stack):
    alice, bob = sign_up(stack), sign_up(stack)
    bobs = upload(stack, bob, jpeg()).json()["image_url"]

    response = requests.post(
        stack.url("/users/update-profile-picture"),
        data={"user_id": alice.user_id, "image_url": bobs},
        headers=alice.headers,
        timeout=10,
    )
    read = requests.get(
        stack.url(bobs.replace("/storage/profile-image/", "/storage/authenticated-url/")),
        headers=alice.headers,
        timeout=10,
    )

    assert response.status_code == 403
    assert read.status_code == 403


def test_external_image_url_is_422(stack):
    alice = sign_up(stack)

    response = requests.post(
        stack.url("/storage/update-profile-picture"),
        data={"user_id": alice.user_id, "image_url": "http://169.254.169.254/latest/meta-data"},
        headers=alice.headers,
        timeout=10,
    )

    assert response.status_code == 422


def test_profile_image_streams_public_photo_with_headers(stack):
    alice = sign_up(stack)
    image_url = upload(stack, alice, jpeg()).json()["image_url"]

    response = requests.get(stack.url(image_url), timeout=10)
    missing = requests.get(
        stack.url(f"/storage/profile-image/{BUCKET}/profiles/x/nope.jpg"), timeout=10
    )
    other_bucket = requests.get(
        stack.url("/storage/profile-image/other/profiles/x.jpg"), timeout=10
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert "max-age" in response.headers["Cache-Control"]
    assert response.content[:3] == b"\xff\xd8\xff"
    assert (missing.status_code, other_bucket.status_code) == (404, 404)


def test_signed_url_is_scoped_to_allowed_bucket_and_caller(stack):
    alice = sign_up(stack)

    ok = requests.post(
        stack.url("/storage/signed-url"),
        json={"fileName": "me.png", "contentType": "image/png", "bucketName": BUCKET},
        headers=alice.headers,
        timeout=10,
    )
    other_bucket = requests.post(
        stack.url("/storage/signed-url"),
        json={"fileName": "me.png", "contentType": "image/png", "bucketName": "secrets"},
        headers=alice.headers,
        timeout=10,
    )
    not_image = requests.post(
        stack.url("/storage/signed-url"),
        json={"fileName": "me.html", "contentType": "text/html", "bucketName": BUCKET},
        headers=alice.headers,
        timeout=10,
    )

    assert ok.status_code == 200
    assert ok.json()["objectName"].startswith(f"profiles/{alice.user_id}/")
    assert "X-Goog-Signature=" in ok.json()["signedUrl"]
    assert other_bucket.status_code == 403
    assert not_image.status_code == 422


def signed_put(stack, who, content: bytes) -> dict:
    issued = requests.post(
        stack.url("/storage/signed-url"),
        json={"fileName": "me.jpg", "contentType": "image/jpeg", "bucketName": BUCKET},
        headers=who.headers,
        timeout=10,
    ).json()
    put = requests.put(
        issued["signedUrl"], data=content, headers={"Content-Type": "image/jpeg"}, timeout=10
    )
    assert put.status_code in (200, 201), put.text
    return issued


def test_signed_upload_is_cleaned_and_analysed_by_its_storage_events(stack):
    # Storage -> Pub/Sub -> push -> photo_finalized, as Eventarc delivers it: no hand-posted event.
    alice = sign_up(stack)
    issued = requests.post(
        stack.url("/storage/signed-url"),
        json={"fileName": "me.jpg", "contentType": "image/jpeg", "bucketName": BUCKET},
        headers=alice.headers,
        timeout=10,
    ).json()
    # The app shows the picture it is about to upload (setup: the object does not exist yet).
    clients.firestore().collection("users").document(alice.user_id).update(
        {"profilePic": issued["publicUrl"]}
    )
    with_gps = jpeg(astronaut_pixels(), gps=True)

    put = requests.put(
        issued["signedUrl"], data=with_gps, headers={"Content-Type": "image/jpeg"}, timeout=10
    )

    assert put.status_code in (200, 201), put.text
    picture = wait_picture_data(alice.user_id)
    assert picture["face_detected"] is True, picture
    assert picture["error"] is None
    blob = clients.storage().bucket(BUCKET).get_blob(issued["objectName"])
    assert blob.metadata == {"cleaned": "1"}
    stored = Image.open(io.BytesIO(blob.download_as_bytes())).getexif()
    assert ExifTags.Base.Make not in stored
    assert not stored.get_ifd(ExifTags.IFD.GPSInfo)


def test_signed_upload_that_is_not_an_image_is_deleted_by_its_storage_event(stack):
    alice = sign_up(stack)

    issued = signed_put(stack, alice, b"<html>not a picture</html>")

    bucket = clients.storage().bucket(BUCKET)
    deadline = time.monotonic() + 60
    while bucket.get_blob(issued["objectName"]) is not None:
        assert time.monotonic() < deadline, "the non-image upload was never deleted"
        time.sleep(0.2)


def test_pending_upload_is_adopted_by_new_user(stack):
    phone = random_number()
    token = phone_token(stack, phone)["token"]
    headers = {"Authorization": f"Bearer {token}"}
    pending = requests.post(
        stack.url("/storage/upload-photo"),
        files={"file": ("p.jpg", jpeg(), "image/jpeg")},
        headers=headers,
        timeout=30,
    ).json()
    assert pending["analysis"] == "pending_profile"
    assert "/pending/" in pending["image_url"]

    created = requests.post(
        stack.url("/users"), json={"profilePic": pending["image_url"]}, headers=headers, timeout=30
    )

    assert created.status_code == 201, created.text
    user_id = created.json()["userId"]
    assert created.json()["profilePic"].startswith(
        f"/storage/profile-image/{BUCKET}/profiles/{user_id}/"
    )
    assert wait_picture_data(user_id)["error"] == "No face detected"


def analyze_with_weights(monkeypatch, deepface_home, image: bytes):
    from shared.platform.config import get_settings
    from shared.social import faces

    monkeypatch.setenv("DEEPFACE_HOME", str(deepface_home))
    get_settings.cache_clear()
    try:
        return faces.analyze_image(image)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_missing_weights_keep_the_detection_and_name_the_attributes(stack, monkeypatch, tmp_path):
    result = analyze_with_weights(monkeypatch, tmp_path, astronaut())

    assert result.face_detected is True
    assert set(result.region) == {"x", "y", "w", "h"}
    assert result.region["w"] > 50 and result.region["h"] > 50
    assert result.gender is None and result.race is None
    assert result.missing_attributes == ["gender", "race"]
    assert result.error == (
        "Model weights missing: gender_model_weights.onnx, race_model_single_batch.onnx"
    )
    assert not [f for f in tmp_path.rglob("*") if f.is_file()]  # nothing was downloaded


def test_present_weights_are_used_and_only_the_missing_ones_named(stack, monkeypatch, tmp_path):
    from tests.fakes.face_models import write_models

    (write_models(tmp_path) / "race_model_single_batch.onnx").unlink()

    result = analyze_with_weights(monkeypatch, tmp_path, astronaut())

    assert result.face_detected is True
    assert result.gender is not None and result.gender.label in ("Man", "Woman")
    assert result.race is None
    assert result.missing_attributes == ["race"]
    assert result.error == "Model weights missing: race_model_single_batch.onnx"


def test_no_face_still_names_the_missing_attributes(stack, monkeypatch, tmp_path):
    result = analyze_with_weights(monkeypatch, tmp_path, jpeg())

    assert result.face_detected is False
    assert result.region is None
    assert result.error == "No face detected"
    assert result.missing_attributes == ["gender", "race"]
