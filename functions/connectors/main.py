"""The `connectors` function: MCP tool listing and calls, and spec fetch by URL."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.agents import connectors as mcp_client
from shared.agents import specs
from shared.platform.http import RequestContext, Router, http_function

router = Router("connectors")
_UPSTREAM = {400: "Bad Request (the URL may not be fetched)", 502: "Bad Gateway"}


class ListToolsRequest(BaseModel):
    """The body of `POST /mcp/tools`."""

    model_config = ConfigDict(extra="forbid")

    mcp_url: str = Field(min_length=1, max_length=2048)
    auth_token: str | None = Field(default=None, max_length=8192)


class ToolList(BaseModel):
    """The tools of one MCP server."""

    mcp_url: str
    tools: list[mcp_client.ToolInfo]


class CallToolRequest(ListToolsRequest):
    """The body of `POST /mcp/call`."""

    tool_name: str = Field(min_length=1, max_length=256)
    arguments: dict[str, Any] = Field(default_factory=dict)


@router.post(
    "/mcp/tools",
    auth="user",
    summary="List MCP Tools",
    body=ListToolsRequest,
    response=ToolList,
    responses=_UPSTREAM,
)
def list_mcp_tools(ctx: RequestContext, body: ListToolsRequest) -> ToolList:
    """Connect to a remote MCP server (streamable HTTP, or SSE for `.../sse`) and list its tools."""
    tools = mcp_client.list_tools(body.mcp_url, body.auth_token)
    return ToolList(mcp_url=body.mcp_url, tools=tools)


@router.post(
    "/mcp/call",
    auth="user",
    summary="Call MCP Tool",
    body=CallToolRequest,
    response=mcp_client.ToolCallResult,
    responses=_UPSTREAM,
)
def call_mcp_tool(ctx: RequestContext, body: CallToolRequest) -> mcp_client.ToolCallResult:
    """Call one tool of a remote MCP server; a failing tool gives `is_error`, not a 4xx/5xx."""
    return mcp_client.call_tool(body.mcp_url, body.auth_token, body.tool_name, body.arguments)


@router.post(
    "/specs/fetch",
    auth="user",
    summary="Fetch Spec From Url",
    body=specs.FetchSpecRequest,
    response=specs.FetchedSpec,
    responses=_UPSTREAM,
)
def fetch_spec(ctx: RequestContext, body: specs.FetchSpecRequest) -> specs.FetchedSpec:
    """Fetch an OpenAPI or Swagger document (JSON or YAML) from a public URL."""
    return specs.fetch_spec(body.url)


connectors = http_function(router)
