"""Cloud Tasks: one way to enqueue, one way to run a worker.

Every task is an HTTP task whose JSON body is signed with HMAC-SHA256 under
`TASK_SIGNING_SECRET` (header `X-Task-Signature`); in production the task
also carries an OIDC token for the worker function's invoker. Workers refuse
unsigned or mis-signed tasks, and translate outcomes into what Cloud Tasks
understands: 2xx when the work is done or when retrying cannot help, non-2xx
only when a retry can succeed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from shared.platform import clients, coldstart
from shared.platform.config import get_settings
from shared.platform.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)
from shared.platform.http import json_response
from shared.platform.logging import configure_logging

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Task-Signature"
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
_NO_RETRY: tuple[type[DomainError], ...] = (
    BadRequest,
    InvalidInput,
    NotFound,
    Forbidden,
    Conflict,
)

PayloadT = TypeVar("PayloadT", bound=BaseModel)


def sign(body: bytes) -> str:
    """Return the signature header value for a task body.

    Args:
        body: The exact bytes sent as the task body.

    Returns:
        `v1=` followed by the hex HMAC-SHA256 of the body.
    """
    secret = get_settings().task_secret()
    return "v1=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None) -> bool:
    """Check a task body against its signature header in constant time.

    Args:
        body: The body as received.
        signature: The `X-Task-Signature` header, or None.

    Returns:
        True only for a correct signature.
    """
    return signature is not None and hmac.compare_digest(sign(body), signature)


def worker_url(queue: str) -> str:
    """Return the URL Cloud Tasks calls for a queue's worker function.

    Args:
        queue: A queue name configured in `TASK_QUEUES`.

    Returns:
        The worker function's URL.

    Raises:
        ValueError: The queue is not configured.
    """
    settings = get_settings()
    if queue not in settings.task_queues:
        raise ValueError(f"unknown queue {queue!r}")
    return f"{settings.tasks_target_base_url.rstrip('/')}/{settings.task_queues[queue]}"


def enqueue(
    queue: str,
    payload: BaseModel | Mapping[str, Any],
    *,
    dedup_name: str | None = None,
    delay: timedelta | None = None,
) -> str:
    """Create an HTTP task that calls the queue's worker with a signed JSON body.

    Args:
        queue: A queue name configured in `TASK_QUEUES`.
        payload: The task body.
        dedup_name: A deterministic task name; enqueueing the same name twice
            creates one task (Cloud Tasks refuses the duplicate).
        delay: Run no earlier than this from now.

    Returns:
        The full task name.

    Raises:
        Unavailable: The queue could not be reached.
    """
    from google.api_core import exceptions as google_exceptions
    from google.cloud import tasks_v2

    settings = get_settings()
    client = clients.tasks()
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    url = worker_url(queue)
    http_request = tasks_v2.HttpRequest(
        http_method=tasks_v2.HttpMethod.POST,
        url=url,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body)},
        body=body,
    )
    if settings.tasks_invoker_service_account and not settings.tasks_emulator_host:
        http_request.oidc_token = tasks_v2.OidcToken(
            service_account_email=settings.tasks_invoker_service_account, audience=url
        )
    parent = client.queue_path(settings.project_id, settings.tasks_location, queue)
    task = tasks_v2.Task(http_request=http_request)
    if dedup_name is not None:
        task.name = f"{parent}/tasks/{_task_id(dedup_name)}"
    if delay is not None:
        task.schedule_time = datetime.now(UTC) + delay
    try:
        created = client.create_task(parent=parent, task=task, timeout=10)
    except google_exceptions.AlreadyExists:
        return str(task.name)
    except google_exceptions.GoogleAPIError as exc:
        logger.error("enqueue failed", extra={"queue": queue, "error": type(exc).__name__})
        raise Unavailable("Task queue unavailable") from exc
    return str(created.name)


def _task_id(name: str) -> str:
    if _TASK_ID.match(name):
        return name
    return hashlib.sha256(name.encode()).hexdigest()


@dataclass(frozen=True)
class TaskContext:
    """Delivery facts Cloud Tasks sends with a task.

    Attributes:
        queue: The queue name.
        task_name: The task's short name.
        retry_count: How many times this task was tried before.
    """

    queue: str
    task_name: str
    retry_count: int


def _retry_count(header: str | None) -> int:
    """The delivery's retry count (a header that is not a small number counts as 0)."""
    text = (header or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0


def task_worker(
    model: type[PayloadT],
) -> Callable[[Callable[[PayloadT, TaskContext], None]], Callable[[flask.Request], flask.Response]]:
    """Turn a handler into a Cloud Tasks worker entry point.

    The entry point refuses bad signatures (401), drops payloads that fail
    validation and handler errors that a retry cannot fix (200), and asks for
    a retry (503) when a dependency is unavailable or (500) on a bug.

    Args:
        model: The pydantic model of the task body.

    Returns:
        A decorator producing the functions-framework entry point.
    """
    configure_logging()

    def decorate(
        handler: Callable[[PayloadT, TaskContext], None],
    ) -> Callable[[flask.Request], flask.Response]:
        @coldstart.entry_point
        def entry_point(request: flask.Request) -> flask.Response:
            body = request.get_data()
            if not verify(body, request.headers.get(SIGNATURE_HEADER)):
                logger.warning("task refused: missing or bad signature")
                return json_response({"detail": "Invalid task signature"}, 401)
            context = TaskContext(
                # Cloud Tasks sends the short name; the emulator the full path.
                queue=request.headers.get("X-CloudTasks-QueueName", "").rsplit("/", 1)[-1],
                task_name=request.headers.get("X-CloudTasks-TaskName", ""),
                retry_count=_retry_count(request.headers.get("X-CloudTasks-TaskRetryCount")),
            )
            try:
                payload = model.model_validate_json(body)
            except ValidationError:
                logger.error("task dropped: invalid payload", extra={"task": context.task_name})
                return json_response({"status": "dropped"}, 200)
            try:
                handler(payload, context)
            except _NO_RETRY as exc:
                logger.warning("task dropped: %s", exc.detail, extra={"task": context.task_name})
                return json_response({"status": "dropped"}, 200)
            except DomainError as exc:
                logger.warning("task will retry: %s", exc.detail, extra={"task": context.task_name})
                return json_response({"status": "retry"}, 503)
            except Exception:
                logger.exception("task failed", extra={"task": context.task_name})
                return json_response({"status": "retry"}, 500)
            return json_response({"status": "done"}, 200)

        entry_point.__name__ = handler.__name__
        return entry_point

    return decorate
