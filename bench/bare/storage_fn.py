"""Baseline that streams an object from Cloud Storage, like the profile-image proxy."""

import flask
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

_client = None


def image(request):
    global _client  # noqa: PLW0603 - a bare function caches its client like any other
    if _client is None:
        _client = storage.Client(project="bench", credentials=AnonymousCredentials())
    _, _, _, bucket, blob = request.path.split("/", 4)
    found = _client.bucket(bucket).get_blob(blob)
    return flask.Response(found.download_as_bytes(), mimetype=found.content_type)
