"""`agent_factory.remote_mcp_client.RemoteMCPClient` without fastmcp.

Tool listing and tool calls go to the platform's connectors routes
(`POST /mcp/tools`, `POST /mcp/call`) with the run's token; the platform
speaks MCP to the remote server through its guarded fetcher. The method
names and result shape follow gofannon's client (fastmcp's `CallToolResult`:
`content`, `structured_content`, `data`, `is_error`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sandbox_runtime


@dataclass
class Tool:
    """A tool the server exposes."""

    name: str
    description: str | None = None
    inputSchema: dict[str, Any] = field(default_factory=dict)  # noqa: N815 - MCP's field name


@dataclass
class TextContent:
    """A content block (text, or any other type with its fields kept)."""

    type: str
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallToolResult:
    """The result of a tool call."""

    content: list[TextContent]
    structured_content: Any = None
    data: Any = None
    is_error: bool = False


def _block(raw: dict[str, Any]) -> TextContent:
    extra = {k: v for k, v in raw.items() if k not in ("type", "text")}
    return TextContent(type=str(raw.get("type", "text")), text=raw.get("text"), extra=extra)


class RemoteMCPClient:
    """A client for one remote MCP server (streamable HTTP, or SSE for `/sse` URLs)."""

    def __init__(self, remote_url: str, auth_token: str | None = None) -> None:
        self.remote_url = remote_url
        self._auth_token = auth_token
        self._tools: list[Tool] = []

    def _target(self) -> dict[str, Any]:
        target: dict[str, Any] = {"mcp_url": self.remote_url}
        if self._auth_token:
            target["auth_token"] = self._auth_token
        return target

    async def list_tools(self) -> list[Tool]:
        """Fetch and remember the server's tools."""
        answer = await sandbox_runtime.current().post("/mcp/tools", self._target())
        self._tools = [
            Tool(
                name=t["name"],
                description=t.get("description"),
                inputSchema=t.get("inputSchema") or {},
            )
            for t in answer.get("tools", [])
        ]
        return self._tools

    def get_tool_doc(self, tool_name: str) -> str | None:
        """A markdown description of a listed tool and how to call it (None if unknown)."""
        tool = next((t for t in self._tools if t.name == tool_name), None)
        if tool is None:
            return None
        properties = tool.inputSchema.get("properties", {})
        required = tool.inputSchema.get("required", [])
        lines = []
        for name, spec in properties.items():
            kind = str(spec.get("type", "Any")).replace("integer", "int").replace("string", "str")
            needed = "required" if name in required else "optional"
            lines.append(f"- `{name}` ({kind}, {needed}): {spec.get('description', '')}")
        arguments = ", ".join(f"{name}=..." for name in properties)
        params = "\n".join(lines) if lines else "This tool takes no parameters."
        return (
            f"### Tool: `{tool_name}`\n**Description**: {tool.description}\n\n"
            f"**Parameters**:\n{params}\n\n**How to call**:\nYou **MUST** use `await` to call "
            f"this tool.\n\nresult = await mcpc['{self.remote_url}'].call("
            f"tool_name='{tool_name}', {arguments})\n"
        )

    async def call(self, tool_name: str, **params: Any) -> CallToolResult:
        """Call a tool with keyword arguments.

        Raises:
            ValueError: The server has no such tool.
        """
        if not self._tools:
            await self.list_tools()
        if tool_name not in [t.name for t in self._tools]:
            raise ValueError(f"Tool '{tool_name}' not found on the server.")
        runtime = sandbox_runtime.current()
        payload = {**self._target(), "tool_name": tool_name, "arguments": params}
        answer = await runtime.post("/mcp/call", payload)
        runtime.emit({"trace": {"type": "mcp_call", "tool": tool_name, "url": self.remote_url}})
        structured = answer.get("structured_content")
        data = structured.get("result", structured) if isinstance(structured, dict) else structured
        return CallToolResult(
            content=[_block(b) for b in answer.get("content", []) if isinstance(b, dict)],
            structured_content=structured,
            data=data,
            is_error=bool(answer.get("is_error")),
        )
