"""The local gateway: one WSGI app in front of every function.

Public paths are routed by the Hosting rewrites of `firebase.json`, exactly
as Firebase Hosting routes them in production. `/_functions/{name}/...`
reaches any deployed function directly, like its own
`https://REGION-PROJECT.cloudfunctions.net/{name}` URL: the Cloud Tasks
emulator calls the workers there, and event-triggered functions take
CloudEvents there as Eventarc delivers them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from devstack.functions_index import (
    deployed_functions,
    hosting_rewrites,
    load_entry_point,
    resolve,
)

logger = logging.getLogger(__name__)

_FUNCTIONS_PREFIX = "/_functions/"


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
        if request.path.startswith(_FUNCTIONS_PREFIX):
            name, _, rest = request.path[len(_FUNCTIONS_PREFIX) :].partition("/")
            request = flask.Request(dict(request.environ, PATH_INFO="/" + rest))
        else:
            name = resolve(rewrites, request.path) or ""
        function = functions.get(name)
        if function is None:
            return flask.jsonify(detail="Not Found"), 404
        if name in specs and specs[name].event_triggered:
            # Eventarc delivers CloudEvents over HTTP; hand the function the event.
            from cloudevents.http import from_http

            function(from_http(dict(request.headers), request.get_data()))
            return flask.Response(status=204)
        return flask.make_response(function(request))

    return app


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
