"""The HTTP layer over functions-framework (Flask) requests.

A `Router` holds one function group's route table: method, path template
with typed parameters, pydantic models for query, body and response, and the
authentication each route needs. `Router.dispatch` matches a request,
authenticates, validates, calls the handler and serialises the result.

Errors leave as FastAPI-style bodies: `{"detail": "message"}`, and for
validation 422 `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`.
`_error_response` is the single place where domain errors become statuses.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import flask
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.platform import auth, coldstart, paging
from shared.platform.config import get_settings
from shared.platform.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from shared.platform.logging import configure_logging, request_log_context
from shared.platform.models import Model
from shared.platform.values import DOC_ID_PATTERN, UnreadableJson, UnstorableValue, parse_json

logger = logging.getLogger(__name__)

AuthMode = Literal["none", "optional", "user", "admin", "run", "demo", "webhook"]
Handler = Callable[..., Any]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(str|int|path|id))?\}")
_CONVERTERS: dict[str, tuple[str, type]] = {
    "str": (r"[^/]+", str),
    # A document id (uuids, Firebase uids): never Firestore's reserved `__...__` form.
    "id": (DOC_ID_PATTERN, str),
    "int": (r"-?[0-9]+", int),
    "path": (r".+", str),
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
_STATUS: dict[type[DomainError], int] = {
    BadRequest: 400,
    InvalidInput: 422,
    Unauthorized: 401,
    PaymentRequired: 402,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    RateLimited: 429,
    BadGateway: 502,
    Unavailable: 503,
}


class RequestValidationFailed(Exception):
    """Request parameters or body failed validation (answered with 422)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("request validation failed")
        self.errors = errors


class ValidationErrorItem(Model):
    """One validation problem."""

    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(Model):
    """The 422 body, as FastAPI shapes it."""

    detail: list[ValidationErrorItem]


class ErrorBody(Model):
    """Every non-validation error body."""

    detail: str


@dataclass
class RequestContext:
    """What a handler may know about the request besides its validated inputs.

    Attributes:
        request: The underlying Flask request.
        request_id: The id echoed in `X-Request-Id`.
        principal: The authenticated caller, or None on public routes.
    """

    request: flask.Request
    request_id: str
    principal: auth.Principal | None

    @property
    def user(self) -> auth.Principal:
        """The authenticated caller (only on routes that require authentication)."""
        if self.principal is None:
            raise Unauthorized("Not authenticated")
        return self.principal

    @property
    def client_host(self) -> str | None:
        """The client address.

        With `TRUSTED_PROXY_HOPS=n`, the n-th `X-Forwarded-For` entry from the
        right (the one our own proxies appended); otherwise the peer address.
        Entries further left are client-supplied and never trusted.
        """
        hops = get_settings().trusted_proxy_hops
        header = self.request.headers.get("X-Forwarded-For", "")
        forwarded = [hop.strip() for hop in header.split(",") if hop.strip()]
        if hops and len(forwarded) >= hops:
            return forwarded[-hops]
        return self.request.remote_addr

    @property
    def user_agent(self) -> str | None:
        """The client's `User-Agent` header."""
        return self.request.headers.get("User-Agent")


@dataclass
class Route:
    """One entry of a route table."""

    method: str
    path: str
    handler: Handler
    auth: AuthMode
    summary: str
    tags: tuple[str, ...]
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    form: type[BaseModel] | None
    files: tuple[str, ...]
    response: Any
    status_code: int
    max_body_bytes: int | None
    responses: dict[int, str]
    cors: bool = False
    pattern: re.Pattern[str] = field(init=False)
    path_params: dict[str, type] = field(init=False)

    def __post_init__(self) -> None:
        regex, params, position = "", {}, 0
        for match in _PARAM.finditer(self.path):
            name, kind = match.group(1), match.group(2) or "str"
            fragment, python_type = _CONVERTERS[kind]
            regex += re.escape(self.path[position : match.start()]) + f"(?P<{name}>{fragment})"
            params[name] = python_type
            position = match.end()
        regex += re.escape(self.path[position:])
        self.pattern = re.compile(f"^{regex}$")
        self.path_params = params

    @cached_property
    def adapter(self) -> TypeAdapter[Any] | None:
        """The response type's validator and serialiser, built once, on first use."""
        return None if self.response is None else TypeAdapter(self.response)

    @property
    def openapi_path(self) -> str:
        """The template with converters removed (`{blob:path}` becomes `{blob}`)."""
        return _PARAM.sub(lambda m: "{" + m.group(1) + "}", self.path)

    @property
    def operation_id(self) -> str:
        """A unique, stable name for the operation, from its method and path."""
        words = re.sub(r"[^a-z0-9]+", "_", self.openapi_path.lower()).strip("_") or "root"
        return f"{self.method.lower()}_{words}"


class Router:
    """The route table of one function group.

    Args:
        name: The group's name, used as the OpenAPI tag by default.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        auth: AuthMode,
        summary: str,
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        form: type[BaseModel] | None = None,
        files: Iterable[str] = (),
        response: Any = None,
        status_code: int = 200,
        max_body_bytes: int | None = None,
        responses: dict[int, str] | None = None,
        tags: Iterable[str] | None = None,
        cors: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register a handler.

        The handler is called as `handler(ctx, **path_params, query=..., body=...)`
        (only the inputs the route declares) and returns a value matching
        `response`, or a `flask.Response` for non-JSON answers.

        Args:
            method: HTTP method.
            path: Template such as `/users/{user_id:id}` or `/files/{name:path}`; `id`
                matches document ids, `int` integers, `path` several segments.
            auth: `none`, `optional`, `user` (any valid token), `admin`, `run`
                (a user token or a sandboxed agent's run token), `demo` (a user token
                or a demo page's capability that names the path's `{friendly_name}`;
                the only routes a capability reaches), or `webhook` (the
                `Authorization` header equals `LOOPMESSAGE_WEBHOOK_SECRET`, checked in
                constant time before the body is read).
            summary: The operation's one-line description.
            query: Model validating the query string.
            body: Model validating the JSON body.
            form: Model validating the fields of a multipart or urlencoded form body.
            files: Names of required file fields of a multipart body.
            response: Type of the JSON response (a model or any type pydantic knows).
            status_code: Status of a successful answer.
            max_body_bytes: Largest accepted body (defaults to the global JSON limit).
            responses: Extra documented error statuses and their descriptions.
            tags: OpenAPI tags (defaults to the router's name).
            cors: Answer cross-origin calls from any origin (`Access-Control-Allow-Origin: *`,
                preflights included) without credentials: for bearer-token APIs that
                sandboxed pages (`Origin: null`) call. Origins in `CORS_ORIGINS` get
                credentialed answers (their own origin echoed) on every route.

        Returns:
            A decorator that registers and returns the handler unchanged.
        """

        def register(handler: Handler) -> Handler:
            if auth == "demo" and "{friendly_name" not in path:
                raise ValueError("auth='demo' routes take the deployment as {friendly_name}")
            self.routes.append(
                Route(
                    method=method.upper(),
                    path=path,
                    handler=handler,
                    auth=auth,
                    summary=summary,
                    tags=tuple(tags) if tags is not None else (self.name,),
                    query=query,
                    body=body,
                    form=form,
                    files=tuple(files),
                    response=response,
                    status_code=status_code,
                    max_body_bytes=max_body_bytes,
                    responses=responses or {},
                    cors=cors,
                )
            )
            return handler

        return register

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Register a GET route (see `route`)."""
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Register a POST route (see `route`)."""
        return self.route("POST", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Register a PUT route (see `route`)."""
        return self.route("PUT", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Register a DELETE route (see `route`)."""
        return self.route("DELETE", path, **options)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """Find the route for a request.

        Args:
            method: The request method.
            path: The request path.

        Returns:
            The route and the raw path parameters.

        Raises:
            NotFound: No route has this path.
            MethodNotAllowed: A route has this path, but not this method.
        """
        allowed: list[str] = []
        # HEAD is GET without the body (the WSGI server drops it).
        wanted = "GET" if method.upper() == "HEAD" else method.upper()
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == wanted:
                return route, found.groupdict()
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(allowed)
        raise NotFound("Not Found")

    def dispatch(self, request: flask.Request) -> flask.Response:
        """Serve one request: the whole request/response cycle of the group.

        Args:
            request: The Flask request functions-framework hands over.

        Returns:
            The response, with `X-Request-Id` set.
        """
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        started = time.perf_counter()
        with request_log_context(request_id, _trace(request)):
            origin = request.headers.get("Origin", "")
            credentialed = origin in get_settings().cors_origins
            cors = self._methods(request.path, credentialed)
            try:
                if cors and request.method == "OPTIONS":
                    response = _preflight(cors, credentialed)
                else:
                    route, raw_params = self.match(request.method, request.path)
                    response = _invoke(route, raw_params, request, request_id)
            except MethodNotAllowed as exc:
                response = _json({"detail": "Method Not Allowed"}, 405)
                response.headers["Allow"] = ", ".join(exc.allowed)
            except RequestValidationFailed as exc:
                response = _json({"detail": exc.errors}, 422)
            except DomainError as exc:
                response = _error_response(exc)
            except Exception as exc:
                if _dependency_down(exc):
                    logger.warning("dependency down or too slow", exc_info=True)
                    response = _error_response(Unavailable(_UNAVAILABLE))
                else:
                    logger.exception("unhandled error")
                    response = _json({"detail": "Internal Server Error"}, 500)
            response.headers["X-Request-Id"] = request_id
            if credentialed:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Allow-Credentials"] = "true"
                response.headers["Access-Control-Expose-Headers"] = _EXPOSED_HEADERS
                response.headers.add("Vary", "Origin")
            elif cors:
                response.headers["Access-Control-Allow-Origin"] = "*"
            logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "httpRequest": {
                        "requestMethod": request.method,
                        "requestUrl": request.path,
                        "status": response.status_code,
                        "latency": f"{time.perf_counter() - started:.6f}s",
                        "userAgent": request.headers.get("User-Agent", ""),
                    }
                },
            )
            return response

    def _methods(self, path: str, credentialed: bool) -> list[str]:
        """The methods a cross-origin caller may use on `path` (empty: not answered cross-origin).

        A configured origin (`CORS_ORIGINS`) may call every route; any other
        origin only the `cors=True` routes.
        """
        return [r.method for r in self.routes if (credentialed or r.cors) and r.pattern.match(path)]


_EXPOSED_HEADERS = "X-Request-Id, X-Run-Id, Retry-After, WWW-Authenticate, X-Next-Cursor, Link"
# The gofannon web UI also sends X-Admin-Password on admin calls; allowed so the call
# goes through, it grants nothing (admin is the token's claim or role).
_CREDENTIALED_HEADERS = "Authorization, Content-Type, Accept, X-Request-Id, X-Admin-Password"


def _preflight(methods: list[str], credentialed: bool) -> flask.Response:
    response = flask.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = ", ".join([*methods, "OPTIONS"])
    response.headers["Access-Control-Allow-Headers"] = (
        _CREDENTIALED_HEADERS if credentialed else "Authorization, Content-Type"
    )
    response.headers["Access-Control-Max-Age"] = "600"
    return response


class MethodNotAllowed(Exception):
    """The path exists but not for this method."""

    def __init__(self, allowed: list[str]) -> None:
        super().__init__("method not allowed")
        self.allowed = allowed


def http_function(router: Router) -> Callable[[flask.Request], flask.Response]:
    """Make a functions-framework HTTP entry point serving a router.

    Args:
        router: The group's route table.

    Returns:
        The entry point; its `router` attribute exposes the table to the
        local gateway and the OpenAPI builder.
    """
    configure_logging()

    @coldstart.entry_point
    def entry_point(request: flask.Request) -> flask.Response:
        return router.dispatch(request)

    entry_point.router = router  # type: ignore[attr-defined]
    return entry_point


def json_response(payload: Any, status: int = 200) -> flask.Response:
    """Build a JSON response (for handlers that need custom headers or status).

    Args:
        payload: Anything `json.dumps` accepts.
        status: The HTTP status.

    Returns:
        The response.
    """
    return _json(payload, status)


def _json(payload: Any, status: int) -> flask.Response:
    return flask.Response(
        json.dumps(payload, separators=(",", ":")), status=status, mimetype="application/json"
    )


def _error_response(exc: DomainError) -> flask.Response:
    status = next(code for kind, code in _STATUS.items() if isinstance(exc, kind))
    if isinstance(exc, InvalidInput):
        item = {"loc": list(exc.loc), "msg": exc.detail, "type": "value_error"}
        return _json({"detail": [item]}, status)
    response = _json({"detail": exc.detail}, status)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unavailable):
        response.headers["Retry-After"] = str(get_settings().unavailable_retry_after_seconds)
    if status >= 500:
        logger.warning("dependency unavailable: %s", exc.detail)
    return response


_UNAVAILABLE = "Service temporarily unavailable; retry later"


def _dependency_down(exc: BaseException) -> bool:
    """Tell whether `exc`, or an exception it was raised from, means a dependency is down.

    Firestore and Cloud Storage calls that failed for lack of an answer
    (unreachable, unavailable, out of time, out of retries, overloaded) are
    answered with 503 and `Retry-After`: the same request may succeed later.
    Only libraries the process has loaded are consulted (one it never imported
    cannot have raised), so no client library is imported here.

    Args:
        exc: What a handler raised.

    Returns:
        True for a transient dependency failure.
    """
    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    google = sys.modules.get("google.api_core.exceptions")
    if google is not None:
        kinds += [
            google.ServiceUnavailable,
            google.DeadlineExceeded,
            google.GatewayTimeout,
            google.TooManyRequests,
            google.RetryError,
        ]
    transport = sys.modules.get("google.auth.exceptions")
    if transport is not None:
        kinds.append(transport.TransportError)
    requests = sys.modules.get("requests.exceptions")
    if requests is not None:
        kinds += [requests.ConnectionError, requests.Timeout]
    error: BaseException | None = exc
    while error is not None:
        if isinstance(error, tuple(kinds)):
            return True
        error = error.__cause__
    return False


def _trace(request: flask.Request) -> str | None:
    header = request.headers.get("X-Cloud-Trace-Context", "")
    trace_id = header.split("/", 1)[0]
    if not re.fullmatch(r"[0-9a-f]{32}", trace_id):
        return None
    return f"projects/{get_settings().project_id}/traces/{trace_id}"


def _invoke(
    route: Route, raw_params: dict[str, str], request: flask.Request, request_id: str
) -> flask.Response:
    principal = _principal(route.auth, request)
    if principal is not None and principal.demo is not None:
        principal.demo.require(raw_params["friendly_name"])
    kwargs: dict[str, Any] = _path_params(route, raw_params)
    if route.query is not None:
        kwargs["query"] = _validate(route.query, request.args.to_dict(flat=True), "query")
    if route.body is not None:
        kwargs["body"] = _validate(route.body, _read_json(route, request), "body")
    if route.form is not None:
        kwargs["form"] = _validate(route.form, _read_form(route, request), "body")
    ctx = RequestContext(request=request, request_id=request_id, principal=principal)
    result = route.handler(ctx, **kwargs)
    if isinstance(result, flask.Response):
        return result
    if route.status_code == 204:
        return flask.Response(status=204)
    page = result if isinstance(result, paging.Page) else None
    if page is not None:
        result = page.body
    if route.adapter is not None:
        adapter = route.adapter
        result = adapter.dump_python(adapter.validate_python(result), mode="json", by_alias=True)
    response = _json(result, route.status_code)
    if page is not None and page.next_cursor is not None:
        _link_next(response, request, page.next_cursor)
    return response


def _link_next(response: flask.Response, request: flask.Request, cursor: str) -> None:
    """Point at the next page: `X-Next-Cursor`, and `Link` with the same query but that cursor."""
    args = [(key, value) for key, value in request.args.items(multi=True) if key != "cursor"]
    query = urllib.parse.urlencode([*args, ("cursor", cursor)])
    response.headers["X-Next-Cursor"] = cursor
    response.headers["Link"] = f'<{request.path}?{query}>; rel="next"'


def _principal(mode: AuthMode, request: flask.Request) -> auth.Principal | None:
    header = request.headers.get("Authorization")
    if mode == "webhook":
        _check_webhook_secret(header)
        return None
    if mode == "none" or (mode == "optional" and not header):
        return None
    principal = auth.authenticate(header, allow_run=mode == "run", allow_demo=mode == "demo")
    if mode == "admin":
        auth.require_admin(principal)
    return principal


def _check_webhook_secret(header: str | None) -> None:
    """Allow only the configured webhook secret (no secret configured allows nobody)."""
    secret = get_settings().loopmessage_webhook_secret
    expected = secret.get_secret_value().encode() if secret else b""
    if not expected or not hmac.compare_digest((header or "").encode(), expected):
        raise Unauthorized("Invalid webhook authorization")


def _path_params(route: Route, raw: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, python_type in route.path_params.items():
        try:
            values[name] = python_type(raw[name])
        except ValueError as exc:
            raise RequestValidationFailed(
                [
                    {
                        "loc": ["path", name],
                        "msg": "Input should be a valid integer",
                        "type": "int_parsing",
                    }
                ]
            ) from exc
    return values


def _body_limit(route: Route, request: flask.Request) -> int:
    """Return the route's body limit, refusing a declared length above it."""
    limit = route.max_body_bytes or get_settings().max_json_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
    return limit


def _require_media_type(request: flask.Request, accepted: tuple[str, ...]) -> None:
    """Refuse a body whose declared type the route does not take (an absent type is JSON)."""
    mimetype = request.mimetype
    if mimetype and mimetype not in accepted and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be {' or '.join(accepted)}")


def _read_json(route: Route, request: flask.Request) -> Any:
    limit = _body_limit(route, request)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
    if not raw:
        raise RequestValidationFailed(
            [{"loc": ["body"], "msg": "Field required", "type": "missing"}]
        )
    _require_media_type(request, ("application/json",))
    try:
        return parse_json(raw)
    except UnreadableJson as exc:
        where = ["body"] if exc.position is None else ["body", exc.position]
        raise RequestValidationFailed(
            [{"loc": where, "msg": str(exc), "type": "json_invalid"}]
        ) from exc
    except UnstorableValue as exc:
        raise RequestValidationFailed(
            [{"loc": ["body", *exc.path], "msg": str(exc), "type": "value_error"}]
        ) from exc


def _read_form(route: Route, request: flask.Request) -> dict[str, str]:
    from werkzeug.exceptions import RequestEntityTooLarge

    limit = _body_limit(route, request)
    _require_media_type(request, ("multipart/form-data", "application/x-www-form-urlencoded"))
    request.max_content_length = limit
    try:
        fields = request.form.to_dict(flat=True)
        missing = [name for name in route.files if name not in request.files]
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes") from exc
    if missing:
        raise RequestValidationFailed(
            [
                {"loc": ["body", name], "msg": "Field required", "type": "missing"}
                for name in missing
            ]
        )
    return fields


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationFailed(
            [
                {"loc": [where, *error["loc"]], "msg": error["msg"], "type": error["type"]}
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from exc
