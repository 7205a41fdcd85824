"""Fake LLM providers speaking the real wire formats, with usage in every answer.

- Gemini API: `POST /{version}/models/{model}:generateContent` (key in `x-goog-api-key`);
- Vertex AI: `POST /{version}/projects/{p}/locations/{l}/publishers/google/models/{model}`
  `:generateContent`;
- OpenAI (and Ollama): `POST /v1/chat/completions` (key in `Authorization: Bearer`);
- Anthropic: `POST /v1/messages` (key in `x-api-key` or as a bearer token, `anthropic-version`).

Each echoes the last user message, reports fixed token usage, records the
request bodies, and can be told to fail with the provider's own error shape
or to wait before answering.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import flask

API_KEY = "test-llm-key"


@dataclass
class FakeLlm:
    """State of the fake providers."""

    input_tokens: int = 1200
    output_tokens: int = 300
    fail_status: int | None = None
    fail_times: int | None = None  # how many requests fail with `fail_status` (None: all)
    delay_seconds: float = 0.0
    reply: str | None = None  # Gemini and Vertex AI answer this text instead of the echo
    # Answers given in turn by OpenAI-compatible and Gemini calls before `reply` or the echo.
    replies: list[str] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)  # (provider, key sent)
    accepted_keys: set[str] = field(default_factory=lambda: {API_KEY})  # Gemini and Anthropic
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.fail_status = None
            self.fail_times = None
            self.delay_seconds = 0.0
            self.reply = None
            self.replies.clear()
            self.requests.clear()
            self.keys.clear()
            self.accepted_keys = {API_KEY}

    def calls(self, provider: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for name, body in self.requests if name == provider]

    def _failing(self) -> bool:
        """Whether this request fails (counting down `fail_times`)."""
        with self._lock:
            if not self.fail_status or self.fail_times == 0:
                return False
            if self.fail_times is not None:
                self.fail_times -= 1
            return True

    def next_reply(self) -> str | None:
        """The next of `replies`, if any is left."""
        with self._lock:
            return self.replies.pop(0) if self.replies else None

    def _record(self, provider: str) -> dict[str, Any]:
        body = flask.request.get_json(force=True)
        headers = flask.request.headers
        key = (
            headers.get("x-goog-api-key")
            or headers.get("x-api-key")
            or headers.get("Authorization", "").removeprefix("Bearer ")
        )
        with self._lock:
            self.requests.append((provider, body))
            self.keys.append((provider, key))
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        return body

    def app(self) -> flask.Flask:
        app = flask.Flask("fake-llm")

        def gemini_answer(provider: str, model: str) -> flask.Response:
            body = self._record(provider)
            if self._failing():
                return _error(
                    self.fail_status,
                    {
                        "error": {
                            "code": self.fail_status,
                            "message": "Internal error",
                            "status": "INTERNAL",
                        }
                    },
                )
            last = body["contents"][-1]["parts"][0]["text"]
            config = body.get("generationConfig", {})
            text = (
                json.dumps({"echo": last})
                if config.get("responseMimeType") == "application/json"
                else f"echo: {last}"
            )
            if self.reply is not None:
                text = self.reply
            text = self.next_reply() or text
            parts = [{"text": "thinking about it", "thought": True}, {"text": text}]
            return flask.jsonify(
                candidates=[
                    {
                        "content": {"role": "model", "parts": parts},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                usageMetadata={
                    "promptTokenCount": self.input_tokens,
                    "candidatesTokenCount": self.output_tokens,
                    "thoughtsTokenCount": 0,
                    "totalTokenCount": self.input_tokens + self.output_tokens,
                },
                modelVersion=model,
                responseId=uuid.uuid4().hex,
            )

        @app.post("/<version>/models/<model>:generateContent")
        def gemini(version: str, model: str) -> flask.Response:
            if flask.request.headers.get("x-goog-api-key") not in self.accepted_keys:
                return _error(
                    400,
                    {
                        "error": {
                            "code": 400,
                            "message": "API key not valid.",
                            "status": "INVALID_ARGUMENT",
                        }
                    },
                )
            return gemini_answer("gemini", model)

        @app.post(
            "/<version>/projects/<project>/locations/<location>/publishers/google/models/<model>:generateContent"
        )
        def vertex(version: str, project: str, location: str, model: str) -> flask.Response:
            return gemini_answer("vertexai", model)

        @app.post("/v1/chat/completions")
        def openai_chat() -> flask.Response:
            if not flask.request.headers.get("Authorization", "").startswith("Bearer "):
                return _error(
                    401,
                    {
                        "error": {
                            "message": "Missing key",
                            "type": "invalid_request_error",
                            "code": None,
                        }
                    },
                )
            body = self._record("openai")
            if self._failing():
                return _error(
                    self.fail_status,
                    {
                        "error": {
                            "message": "The server had an error",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    },
                )
            last = body["messages"][-1]["content"]
            structured = body.get("response_format", {}).get("type") == "json_schema"
            answer = json.dumps({"echo": last}) if structured else f"echo: {last}"
            answer = self.next_reply() or answer
            return flask.jsonify(
                id="chatcmpl-" + uuid.uuid4().hex,
                object="chat.completion",
                created=int(time.time()),
                model=body["model"],
                choices=[
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": answer,
                            "refusal": None,
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                usage={
                    "prompt_tokens": self.input_tokens,
                    "completion_tokens": self.output_tokens,
                    "total_tokens": self.input_tokens + self.output_tokens,
                },
            )

        @app.post("/v1/messages")
        def anthropic_messages() -> flask.Response:
            headers = flask.request.headers
            key = headers.get("x-api-key") or headers.get("Authorization", "").removeprefix(
                "Bearer "
            )
            if key not in self.accepted_keys or not headers.get("anthropic-version"):
                return _error(
                    401,
                    {
                        "type": "error",
                        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                    },
                )
            body = self._record("anthropic")
            if self._failing():
                return _error(
                    self.fail_status,
                    {
                        "type": "error",
                        "error": {"type": "api_error", "message": "Internal server error"},
                    },
                )
            last = body["messages"][-1]["content"]
            if body.get("tool_choice", {}).get("type") == "tool":
                content = [
                    {
                        "type": "tool_use",
                        "id": "toolu_" + uuid.uuid4().hex,
                        "name": body["tool_choice"]["name"],
                        "input": {"echo": last},
                    }
                ]
                stop = "tool_use"
            else:
                content = [{"type": "text", "text": f"echo: {last}"}]
                stop = "end_turn"
            return flask.jsonify(
                id="msg_" + uuid.uuid4().hex,
                type="message",
                role="assistant",
                model=body["model"],
                content=content,
                stop_reason=stop,
                stop_sequence=None,
                usage={"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            )

        return app


def _error(status: int, payload: dict[str, Any]) -> flask.Response:
    response = flask.jsonify(payload)
    response.status_code = status
    return response
