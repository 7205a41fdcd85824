"""Image checks by content and re-encoding (no I/O)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import ExifTags, Image

from shared.platform.errors import InvalidInput
from shared.social.photos import clean_image, parse_image_url, sniff


def encode(kind: str, **options) -> bytes:
    if kind == "HEIF":
        from pillow_heif import register_heif_opener

        register_heif_opener()
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 24, 3), 90, dtype=np.uint8)).save(buffer, format=kind, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "sniffed", "content_type"),
    [
        ("JPEG", "jpeg", "image/jpeg"),
        ("PNG", "png", "image/png"),
        ("WEBP", "webp", "image/webp"),
        ("HEIF", "heic", "image/jpeg"),
    ],
)
def test_accepted_formats_are_recognised_and_re_encoded(kind, sniffed, content_type):
    data = encode(kind)

    clean, stored_type, _ = clean_image(data)

    assert sniff(data) == sniffed
    assert stored_type == content_type
    assert Image.open(io.BytesIO(clean)).size == (24, 16)


@pytest.mark.parametrize("data", [b"GIF89a" + b"\x00" * 64, b"<svg></svg>", b"%PDF-1.7", b""])
def test_other_content_is_refused(data):
    with pytest.raises(InvalidInput):
        clean_image(data)


def test_truncated_image_is_refused():
    with pytest.raises(InvalidInput, match="decoded"):
        clean_image(encode("PNG")[:40])


def test_exif_orientation_is_applied_before_metadata_is_dropped():
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # rotate 90 degrees clockwise to display
    data = encode("JPEG", exif=exif)

    clean, _, _ = clean_image(data)

    image = Image.open(io.BytesIO(clean))
    assert image.size == (16, 24)
    assert not image.getexif()


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.jpg",
        "/storage/profile-image/other-bucket/profiles/u/a.jpg",
        "/storage/profile-image/series-v1-profiles/profiles/../secret",
        "gs://series-v1-profiles/",
    ],
)
def test_only_our_objects_are_accepted_as_image_urls(url):
    with pytest.raises(InvalidInput):
        parse_image_url(url)


def test_our_url_forms_parse_to_the_same_object():
    forms = [
        "/storage/profile-image/series-v1-profiles/profiles/u/a.jpg",
        "https://api.example.com/storage/profile-image/series-v1-profiles/profiles/u/a.jpg",
        "gs://series-v1-profiles/profiles/u/a.jpg",
        "https://storage.googleapis.com/series-v1-profiles/profiles/u/a.jpg",
    ]

    assert {parse_image_url(url).blob for url in forms} == {"profiles/u/a.jpg"}
