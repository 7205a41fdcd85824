"""The `connectors` function: MCP tool listing and calls, and spec fetch by URL."""

from __future__ import annotations

from shared.agents import connectors as mcp_client
from shared.agents import specs
from shared.platform.http import RequestContext, Router, http_function

router = Router("connectors")
_UPSTREAM = {
    400: "Bad Request (the URL may not be fetched)",
    429: "Too Many Requests",
    502: "Bad Gateway",
}


@router.post(
    "/mcp/tools",
    auth="run",
    summary="List MCP Tools",
    body=mcp_client.ListToolsRequest,
    response=mcp_client.ToolList,
    responses=_UPSTREAM,
)
def list_mcp_tools(ctx: RequestContext, body: mcp_client.ListToolsRequest) -> mcp_client.ToolList:
    """Connect to a remote MCP server (streamable HTTP, or SSE for `.../sse`) and list its tools."""
    return mcp_client.list_tools_for(ctx.user, body)


@router.post(
    "/mcp/call",
    auth="run",
    summary="Call MCP Tool",
    body=mcp_client.CallToolRequest,
    response=mcp_client.ToolCallResult,
    responses=_UPSTREAM,
)
def call_mcp_tool(
    ctx: RequestContext, body: mcp_client.CallToolRequest
) -> mcp_client.ToolCallResult:
    """Call one tool of a remote MCP server; a failing tool gives `is_error`, not a 4xx/5xx."""
    return mcp_client.call_tool_for(ctx.user, body)


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
    return specs.fetch_spec_for(ctx.user, body)


connectors = http_function(router)
