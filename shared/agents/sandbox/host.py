"""The `sandbox` function's side: one signed call in, one run out as NDJSON.

The body names the code, its arguments and the run's context (token, agent
name, context windows, LLM overrides); the answer streams one JSON object a
line: `{"trace": {...}}` events, then `{"done": {...}}`. This process holds
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
    context = {**call.context.model_dump(), "platformUrl": get_settings().platform_url}
    for event in get_runner().run(call.code, call.inputDict, call.tools, context):
        yield json.dumps(event, separators=(",", ":"), default=str) + "\n"


def serve(call: SandboxCall) -> flask.Response:
    """Run the code and stream its events (the entry point's handler)."""
    return flask.Response(_lines(call), mimetype="application/x-ndjson")
