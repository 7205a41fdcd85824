"""Baselines that use Firestore only: the same calls as our routes, nothing else."""

import os

from google.cloud import firestore

_db = None


def _client():
    global _db  # noqa: PLW0603 - a bare function caches its client like any other
    if _db is None:
        _db = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    return _db


def health(request):
    _client().collection("_health").document("ping").get(timeout=3)
    return {"status": "healthy", "service": "series-api", "firestore": True}


def public(request):
    user_id = request.path.rsplit("/", 2)[-2]
    record = _client().collection("users").document(user_id).get().to_dict()
    fields = ("userId", "name", "bio", "age", "location", "profilePic", "color")
    return {key: record.get(key) for key in fields}


def missing_task(request):
    """A task worker given a task whose document is gone: one read, then drop it."""
    document = request.get_json()
    key = document.get("ticketId") or document.get("userId")
    _client().collection("_bench_tasks").document(key).get()
    return {"status": "dropped"}
