"""The `sandbox` function's side: one signed call in, one run out as NDJSON.

The body names the code, its arguments and the run's context (token, agent
name, context windows, LLM overrides); the answer streams one JSON object a
line: `{"trace": {...}}` events, then `{"done": {...}}`, with an empty line
after each silent second. This process holds
no credentials of its own: the run token in the body is the only authority
a run has, and it is the user's, for minutes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import flask
from pydantic import ConfigDict, Field

from shared.agents.sandbox.runner import get_runner
from shared.platform.config import get_settings
from shared.platform.models import Model

MAX_CODE_CHARS = 200_000
HEARTBEAT_SECONDS = 1.0


class RunContext(Model):
    """What agent code's runtime needs to reach the platform as the user."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=8192)
    agentName: str = Field(min_length=1, max_length=200)  # noqa: N815 - wire name
    contextWindows: dict[str, int] = Field(default_factory=dict)  # noqa: N815
    llmSettings: dict[str, dict[str, Any]] = Field(default_factory=dict)  # noqa: N815


class SandboxCall(Model):
    """The body of a call to the `sandbox` function."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=MAX_CODE_CHARS)
    inputDict: dict[str, Any]  # noqa: N815 - wire name
    tools: dict[str, Any] = Field(default_factory=dict)
    context: RunContext


def _lines(call: SandboxCall) -> Iterator[str]:
    """The run's events, a JSON object a line, and an empty line after each silent second.

    The empty lines make a caller that went away (a closed stream, a
    cancelled run) fail the next write, which closes this generator and so
    the run's: its whole process tree is killed at once.
    """
    context = {**call.context.model_dump(), "platformUrl": get_settings().platform_url}
    events = get_runner().run(
        call.code, call.inputDict, call.tools, context, heartbeat_seconds=HEARTBEAT_SECONDS
    )
    try:
        for event in events:
            yield json.dumps(event, separators=(",", ":"), default=str) + "\n" if event else "\n"
    finally:
        events.close()


def serve(call: SandboxCall) -> flask.Response:
    """Run the code and stream its events (the entry point's handler)."""
    return flask.Response(_lines(call), mimetype="application/x-ndjson")
