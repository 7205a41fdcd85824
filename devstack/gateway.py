"""The local gateway: one WSGI app in front of every function.

Public paths are routed by the Hosting rewrites of `firebase.json`, exactly
as Firebase Hosting routes them in production. `/_functions/{name}/...`
reaches any deployed function directly, like its own
`https://REGION-PROJECT.cloudfunctions.net/{name}` URL: the Cloud Tasks
emulator calls the workers there, and event-triggered functions take
CloudEvents there as Eventarc delivers them.

`/_eventarc/{name}` is local only: the Pub/Sub emulator's push
subscription for a storage-triggered function delivers the Cloud Storage
notification there (a Pub/Sub push envelope), and the gateway hands the
function the CloudEvent Eventarc would have sent for it (binary mode:
`ce-*` headers, the object resource as the JSON body).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from deploy.manifest import Function
from devstack.emulators import EVENTARC_PATH
from devstack.functions_index import (
    deployed_functions,
    hosting_rewrites,
    load_entry_point,
    resolve,
)

logger = logging.getLogger(__name__)

_FUNCTIONS_PREFIX = "/_functions/"
# Cloud Storage notification event types (Pub/Sub attribute) and their CloudEvent types.
_STORAGE_EVENT_TYPES = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_ARCHIVE": "google.cloud.storage.object.v1.archived",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}


def create_app(extra_functions: dict[str, Callable[..., Any]] | None = None) -> flask.Flask:
    """Build the gateway.

    Args:
        extra_functions: Functions served under `/_functions/` besides the
            deployed ones (tests add probe workers here).

    Returns:
        The Flask app.
    """
    rewrites = hosting_rewrites()
    specs = deployed_functions()
    functions: dict[str, Callable[..., Any]] = {
        name: load_entry_point(spec) for name, spec in specs.items()
    }
    functions.update(extra_functions or {})
    app = flask.Flask("gateway")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> flask.Response:
        # Errors the gateway itself raises (unknown method, malformed request) read as
        # FastAPI-style JSON, like every function's own errors.
        response = flask.jsonify(detail=error.name)
        response.status_code = error.code or 500
        return response

    @app.route("/", defaults={"path": ""}, methods=_METHODS)
    @app.route("/<path:path>", methods=_METHODS)
    def route(path: str) -> Any:
        request = flask.request
        if request.path.startswith(EVENTARC_PATH):
            name = request.path[len(EVENTARC_PATH) :]
            spec = specs.get(name)
            if spec is None or not spec.event_triggered:
                return flask.jsonify(detail="Not Found"), 404
            headers, body = storage_cloud_event(request.get_json(force=True), spec)
            if headers is not None:
                _deliver(functions[name], headers, body)
            return flask.Response(status=204)
        if request.path.startswith(_FUNCTIONS_PREFIX):
            name, _, rest = request.path[len(_FUNCTIONS_PREFIX) :].partition("/")
            request = flask.Request(dict(request.environ, PATH_INFO="/" + rest))
        else:
            name = resolve(rewrites, request.path) or ""
        function = functions.get(name)
        if function is None:
            return flask.jsonify(detail="Not Found"), 404
        if name in specs and specs[name].event_triggered:
            _deliver(function, dict(request.headers), request.get_data())
            return flask.Response(status=204)
        return flask.make_response(function(request))

    return app


def _deliver(function: Callable[..., Any], headers: dict[str, str], body: bytes) -> None:
    """Hand an event-triggered function the CloudEvent of an HTTP request (binary or structured)."""
    from cloudevents.http import from_http

    function(from_http(headers, body))


def storage_cloud_event(
    envelope: dict[str, Any], spec: Function
) -> tuple[dict[str, str] | None, bytes]:
    """Turn a Pub/Sub push of a Cloud Storage notification into Eventarc's CloudEvent.

    Args:
        envelope: The push body: `{"message": {"data", "attributes", "messageId"}, ...}`.
        spec: The function the subscription delivers to.

    Returns:
        The binary-mode CloudEvent headers and body (the object resource), or
        (None, b"") when the event is not of the type the function's trigger
        filters on. (The bucket filter is fake-gcs-server's `-event.bucket`.)
    """
    message = envelope["message"]
    attributes = message.get("attributes") or {}
    event_type = _STORAGE_EVENT_TYPES.get(attributes.get("eventType", ""))
    if event_type is None or event_type != spec.event_filters.get("type"):
        return None, b""
    data = base64.b64decode(message.get("data", ""))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "ce-specversion": "1.0",
        "ce-id": str(message["messageId"]),
        "ce-type": event_type,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{attributes['bucketId']}",
        "ce-subject": f"objects/{attributes['objectId']}",
        "ce-time": attributes.get("eventTime") or message.get("publishTime", ""),
        "ce-bucket": attributes["bucketId"],
    }
    return headers, data


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
