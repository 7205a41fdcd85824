"""The local Eventarc step: a Pub/Sub push of a Cloud Storage notification becomes a CloudEvent."""

from __future__ import annotations

import base64
import json

from cloudevents.http import from_http

from devstack.functions_index import deployed_functions
from devstack.gateway import storage_cloud_event

OBJECT = {
    "kind": "storage#object",
    "name": "profiles/u1/a.jpg",
    "bucket": "series-v1-profiles",
    "generation": "1795508591284987",
    "contentType": "image/jpeg",
    "metadata": {"cleaned": "1"},
}


def push(event_type: str) -> dict:
    """A push envelope as the Pub/Sub emulator delivers fake-gcs-server's notification."""
    return {
        "message": {
            "data": base64.b64encode(json.dumps(OBJECT).encode()).decode(),
            "attributes": {
                "payloadFormat": "JSON_API_V1",
                "bucketId": OBJECT["bucket"],
                "eventTime": "2026-11-24T08:23:11Z",
                "eventType": event_type,
                "objectGeneration": OBJECT["generation"],
                "objectId": OBJECT["name"],
            },
            "messageId": "42",
            "publishTime": "2026-11-24T08:23:11.301Z",
        },
        "subscription": "projects/demo/subscriptions/eventarc-photo_finalized",
    }


def test_finalize_push_becomes_eventarcs_storage_cloud_event():
    spec = deployed_functions()["photo_finalized"]

    headers, body = storage_cloud_event(push("OBJECT_FINALIZE"), spec)

    assert headers is not None
    event = from_http(headers, body)
    assert event["type"] == "google.cloud.storage.object.v1.finalized"
    assert event["source"] == "//storage.googleapis.com/projects/_/buckets/series-v1-profiles"
    assert event["subject"] == "objects/profiles/u1/a.jpg"
    assert event["id"] == "42"
    assert event.data == OBJECT


def test_other_event_types_are_not_delivered_to_a_finalize_trigger():
    spec = deployed_functions()["photo_finalized"]

    headers, body = storage_cloud_event(push("OBJECT_DELETE"), spec)

    assert headers is None and body == b""
