"""Structured logging and redaction."""

from __future__ import annotations

import json
import logging

from shared.platform.logging import CloudJsonFormatter, mask_phone, redact, request_log_context


def make_record(message: str, **extra) -> logging.LogRecord:
    record = logging.getLogger("test").makeRecord(
        "test", logging.WARNING, __file__, 1, message, (), None, extra=extra
    )
    return record


def test_phone_numbers_keep_only_last_two_digits():
    assert mask_phone("+15555550123") == "+*********23"
    assert redact("calling +447700900123 now") == "calling +**********23 now"


def test_bearer_tokens_and_jwts_are_masked():
    jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig"

    assert redact(f"Authorization: Bearer {jwt}") == "Authorization: Bearer [REDACTED]"
    assert redact(f"token={jwt}") == "token=[JWT]"


def test_formatter_emits_cloud_logging_json_with_redacted_extras():
    record = make_record(
        "sent to +15555550123",
        token="abc",
        api_key="k",
        code="123456",
        status_code=201,
        details={"password": "p", "phone": "+15555550123"},
    )

    line = json.loads(CloudJsonFormatter().format(record))

    assert line["severity"] == "WARNING"
    assert line["message"] == "sent to +*********23"
    assert line["token"] == line["api_key"] == line["code"] == "[REDACTED]"
    assert line["status_code"] == 201
    assert line["details"] == {"password": "[REDACTED]", "phone": "+*********23"}


def test_request_fields_stick_to_records_made_inside_the_context():
    from shared.platform.logging import configure_logging

    configure_logging()
    with request_log_context("req-1", "projects/p/traces/abc"):
        record = make_record("inside")
    line = json.loads(CloudJsonFormatter().format(record))

    assert line["requestId"] == "req-1"
    assert line["logging.googleapis.com/trace"] == "projects/p/traces/abc"
