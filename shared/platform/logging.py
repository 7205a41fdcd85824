"""JSON-line logging in the Cloud Logging structured format.

Each record becomes one JSON object on stdout with `severity`, `message`,
the request id and the Cloud Trace id of the request being served. Tokens,
secrets and phone numbers are masked before anything is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

_request_fields: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "request_fields", default=None
)

_SENSITIVE_KEY = re.compile(
    r"(?i)^(.*_)?(token|secret|password|authorization|api_?key|cookie|credentials?)$"
    r"|^(code|otp|verification_code)$"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [REDACTED]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "[JWT]"),
)
_PHONE = re.compile(r"\+\d{7,15}\b")
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
_SEVERITY = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def mask_phone(phone: str) -> str:
    """Mask all but the last two digits of a phone number.

    Args:
        phone: A phone number, usually E.164.

    Returns:
        The number with its middle digits replaced by `*`.
    """
    if len(phone) <= 4:
        return "*" * len(phone)
    return phone[:1] + "*" * (len(phone) - 3) + phone[-2:]


def redact(text: str) -> str:
    """Mask bearer tokens, JWTs and phone numbers in free text.

    Args:
        text: Any string about to be logged.

    Returns:
        The string with sensitive parts masked.
    """
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _PHONE.sub(lambda match: mask_phone(match.group(0)), text)


def _clean(key: str, value: Any) -> Any:
    if _SENSITIVE_KEY.match(key):
        return "[REDACTED]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(key, item) for item in value]
    return value


class CloudJsonFormatter(logging.Formatter):
    """Formats records as Cloud Logging JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record.

        Args:
            record: The log record.

        Returns:
            One JSON object, no newline.
        """
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, record.levelname),
            "message": redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        entry.update(getattr(record, "_request_fields", None) or {})
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _clean(key, value)
        if record.exc_info:
            entry["stack_trace"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def _stamp_request_fields(factory: Callable[..., logging.LogRecord]) -> Callable[..., Any]:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record._request_fields = _request_fields.get()
        return record

    make_record.stamps_request_fields = True  # type: ignore[attr-defined]
    return make_record


def configure_logging(level: int = logging.INFO) -> None:
    """Send the root logger's records to stdout as JSON lines (idempotent).

    Records carry the request fields of the moment they were made, so a
    record formatted later (by another handler or thread) keeps them.

    Args:
        level: The minimum level to emit.
    """
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "stamps_request_fields", False):
        logging.setLogRecordFactory(_stamp_request_fields(factory))
    root = logging.getLogger()
    if any(isinstance(h.formatter, CloudJsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudJsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)


@contextlib.contextmanager
def request_log_context(request_id: str, trace: str | None) -> Iterator[None]:
    """Attach the request id and trace to every record logged inside the block.

    Args:
        request_id: The id echoed to the client in `X-Request-Id`.
        trace: The Cloud Trace resource name, if the request carried one.

    Yields:
        Nothing; the fields apply until the block ends.
    """
    fields = {"requestId": request_id}
    if trace:
        fields["logging.googleapis.com/trace"] = trace
    token = _request_fields.set(fields)
    try:
        yield
    finally:
        _request_fields.reset(token)
