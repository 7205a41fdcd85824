"""Baselines that verify a Firebase ID token (revocation checked) and use Firestore."""

import json
import os
from datetime import UTC, datetime

import firebase_admin
from firebase_admin import auth
from google.cloud import firestore

_db = None
_app = None


def _clients():
    global _db, _app  # noqa: PLW0603 - a bare function caches its clients like any other
    if _db is None:
        project = os.environ["GOOGLE_CLOUD_PROJECT"]
        _db = firestore.Client(project=project)
        _app = firebase_admin.initialize_app(options={"projectId": project}, name="bare")
    return _db, _app


def _uid(request):
    _, app = _clients()
    token = request.headers["Authorization"].split(" ", 1)[1]
    return auth.verify_id_token(token, app=app, check_revoked=True)["uid"]


def _json(value):
    return json.loads(json.dumps(value, default=str))


def validate(request):
    return {"valid": True, "user_id": _uid(request)}


def providers(request):
    _uid(request)
    return {}


def get_user(request):
    uid = _uid(request)
    db, _ = _clients()
    return _json(db.collection("users").document(uid).get().to_dict())


def put_user(request):
    uid = _uid(request)
    db, _ = _clients()
    ref = db.collection("users").document(uid)
    current = ref.get().to_dict()
    changes = {**request.get_json(), "metadata.last_updated_ts": datetime.now(UTC)}
    ref.update(changes)
    current.update(request.get_json())
    return _json(current)


def me(request):
    uid = _uid(request)
    db, _ = _clients()
    return _json(db.collection("accounts").document(uid).get().to_dict())


def session(request):
    uid = _uid(request)
    db, _ = _clients()
    session_id = request.path.split("/")[2]
    stored = db.collection("sessions").document(f"{uid}:{session_id}").get().to_dict()
    return _json(stored["provider_config"])


def demos(request):
    uid = _uid(request)
    db, _ = _clients()
    query = db.collection("demos").where(filter=firestore.FieldFilter("ownerId", "==", uid))
    return _json([snapshot.to_dict() for snapshot in query.stream()])


def namespaces(request):
    uid = _uid(request)
    db, _ = _clients()
    query = db.collection("data_store_namespaces").where(
        filter=firestore.FieldFilter("userId", "==", uid)
    )
    return _json({"namespaces": [snapshot.to_dict() for snapshot in query.stream()]})


def fetch_spec(request):
    import requests

    _uid(request)
    return {"name": "spec", "content": requests.get(request.get_json()["url"], timeout=10).text}
