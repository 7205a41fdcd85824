"""A fake of the platform's connectors routes, as agent code's MCP client calls them.

`POST /mcp/tools {mcp_url, auth_token?}` → `{mcp_url, tools: [{name, description,
inputSchema}]}` and `POST /mcp/call {mcp_url, auth_token?, tool_name, arguments}` →
`{content: [...], structured_content, is_error}` (the connectors issue's contract),
serving one calculator server. Requests are recorded with their Authorization header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import flask

TOOLS = [
    {
        "name": "add",
        "description": "Add two integers.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "description": "First"},
                "b": {"type": "integer", "description": "Second"},
            },
            "required": ["a", "b"],
        },
    }
]


@dataclass
class FakeConnectors:
    """Recorded calls of the fake."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> flask.Flask:
        app = flask.Flask("fake-connectors")

        @app.post("/mcp/tools")
        def tools() -> Any:
            body = flask.request.get_json()
            self.calls.append(("tools", flask.request.headers.get("Authorization", ""), body))
            return {"mcp_url": body["mcp_url"], "tools": TOOLS}

        @app.post("/mcp/call")
        def call() -> Any:
            body = flask.request.get_json()
            self.calls.append(("call", flask.request.headers.get("Authorization", ""), body))
            if body["tool_name"] != "add":
                return {"detail": "Unknown tool"}, 404
            total = body["arguments"]["a"] + body["arguments"]["b"]
            return {
                "content": [{"type": "text", "text": str(total)}],
                "structured_content": {"result": total},
                "is_error": False,
            }

        return app
