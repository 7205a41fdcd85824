"""The MCP client: list a remote server's tools and call them, under the fetch guard.

Used by `POST /mcp/tools` and `POST /mcp/call` (the `connectors` function),
by agent code generation (tool listings for the prompt) and, through
`/mcp/call`, by agent code in the sandbox (`RemoteMCPClient`).

The official `mcp` SDK (1.x) speaks the protocol: streamable HTTP, or SSE
when the URL's path ends in `/sse`. Its HTTP goes through an httpx client
whose transport is pinned by the guarded fetcher's rules
(`shared.platform.fetch`):

- before any session starts, `check_url` parses the URL, resolves its host
  once and checks every address (a refused address is `BadRequest`, 400);
- the transport sends every request to that checked IP, never to the name:
  the request URL's host is replaced by the address while the `Host`
  header keeps the name and, for https, the TLS SNI name and certificate
  check use the name (httpcore's `sni_hostname`). A host not seen yet
  (which the SDK's same-origin redirect rule should never produce) is
  resolved and checked once the same way, so no request reaches an
  unchecked address;
- each response body is cut off past `FETCH_MAX_BYTES` (which ends the
  exchange at once), connections have `FETCH_CONNECT_TIMEOUT_SECONDS`, the
  whole exchange (reads included: a stream may idle while a tool works)
  `MCP_TIMEOUT_SECONDS`, and no environment proxy is used.

An unreachable or misbehaving server is `BadGateway` (502) with a message
saying what went wrong; a tool's own failure is a result with `is_error`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field

from shared.agents import accounts
from shared.platform.addresses import IPAddress
from shared.platform.auth import Principal
from shared.platform.config import get_settings
from shared.platform.errors import BadGateway, DomainError
from shared.platform.fetch import Policy, check_url, limit_caller, resolve_checked
from shared.platform.models import Model

if TYPE_CHECKING:
    import httpx
    from mcp import ClientSession

logger = logging.getLogger(__name__)

_MAX_TOOL_PAGES = 20
_DEFAULT_PORTS = {"http": 80, "https": 443}
ResultT = TypeVar("ResultT")


class ToolInfo(Model):
    """One tool a server offers, as `/mcp/tools` lists it."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict, alias="inputSchema")


class ToolCallResult(Model):
    """The outcome of one tool call.

    Attributes:
        content: The MCP content blocks (`{"type": "text", "text": ...}`, ...).
        structured_content: The tool's structured output, when it has one.
        is_error: Whether the tool reported a failure.
    """

    content: list[dict[str, Any]]
    structured_content: dict[str, Any] | None = None
    is_error: bool = False


class ListToolsRequest(Model):
    """The body of `POST /mcp/tools`."""

    model_config = ConfigDict(extra="forbid")

    mcp_url: str = Field(min_length=1, max_length=2048)
    auth_token: str | None = Field(default=None, max_length=8192)


class ToolList(Model):
    """The tools of one MCP server."""

    mcp_url: str
    tools: list[ToolInfo]


class CallToolRequest(ListToolsRequest):
    """The body of `POST /mcp/call`."""

    tool_name: str = Field(min_length=1, max_length=256)
    arguments: dict[str, Any] = Field(default_factory=dict)


def _require_live(principal: Principal) -> None:
    if principal.run is not None:
        accounts.require_live_run(principal.run)


def list_tools_for(principal: Principal, request: ListToolsRequest) -> ToolList:
    """`POST /mcp/tools`: count the caller's outbound request, then list the server's tools.

    Raises:
        Unauthorized: The run's user was deleted or revoked.
        RateLimited: The caller's outbound budget for this minute is spent.
        BadRequest: The URL may not be fetched.
        BadGateway: The server could not be reached or failed.
    """
    _require_live(principal)
    limit_caller(principal.subject)
    tools = list_tools(request.mcp_url, request.auth_token)
    return ToolList(mcp_url=request.mcp_url, tools=tools)


def call_tool_for(principal: Principal, request: CallToolRequest) -> ToolCallResult:
    """`POST /mcp/call`: count the caller's outbound request, then call the tool.

    Raises:
        Unauthorized: The run's user was deleted or revoked.
        RateLimited: The caller's outbound budget for this minute is spent.
        BadRequest: The URL may not be fetched.
        BadGateway: The server could not be reached or failed.
    """
    _require_live(principal)
    limit_caller(principal.subject)
    return call_tool(request.mcp_url, request.auth_token, request.tool_name, request.arguments)


def transport_for(url: str) -> str:
    """`sse` when the URL's path ends in `/sse`, else `streamable-http`."""
    return "sse" if urlsplit(url).path.rstrip("/").endswith("/sse") else "streamable-http"


def list_tools(
    url: str,
    auth_token: str | None,
    *,
    policy: Policy | None = None,
    timeout: float | None = None,
) -> list[ToolInfo]:
    """List every tool of a remote MCP server (blocking; see `list_tools_async`).

    Args:
        url: The server's endpoint (streamable HTTP, or SSE for `.../sse`).
        auth_token: Sent as `Authorization: Bearer ...` when given.
        policy: The fetch guard (defaults to the settings').
        timeout: Seconds for the whole exchange (defaults to `MCP_TIMEOUT_SECONDS`).

    Returns:
        The tools, all pages of them.

    Raises:
        BadRequest: The URL may not be fetched.
        BadGateway: The server could not be reached or failed.
    """
    import anyio

    return anyio.run(partial(list_tools_async, url, auth_token, policy=policy, timeout=timeout))


async def list_tools_async(
    url: str,
    auth_token: str | None,
    *,
    policy: Policy | None = None,
    timeout: float | None = None,
) -> list[ToolInfo]:
    """`list_tools` for callers already inside an event loop."""

    async def operation(session: ClientSession) -> list[ToolInfo]:
        from mcp import types

        tools: list[ToolInfo] = []
        cursor: str | None = None
        for _page in range(_MAX_TOOL_PAGES):
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
            tools.extend(
                ToolInfo(name=t.name, description=t.description or "", input_schema=t.inputSchema)
                for t in page.tools
            )
            cursor = page.nextCursor
            if not cursor:
                break
        return tools

    return await _exchange(url, auth_token, policy, timeout, operation)


def call_tool(
    url: str,
    auth_token: str | None,
    name: str,
    arguments: dict[str, Any],
    *,
    policy: Policy | None = None,
    timeout: float | None = None,
) -> ToolCallResult:
    """Call one tool of a remote MCP server (blocking; see `call_tool_async`).

    Args:
        url: The server's endpoint (streamable HTTP, or SSE for `.../sse`).
        auth_token: Sent as `Authorization: Bearer ...` when given.
        name: The tool.
        arguments: Its arguments.
        policy: The fetch guard (defaults to the settings').
        timeout: Seconds for the whole exchange (defaults to `MCP_TIMEOUT_SECONDS`).

    Returns:
        The result; a tool that failed (or does not exist) gives `is_error`.

    Raises:
        BadRequest: The URL may not be fetched.
        BadGateway: The server could not be reached or failed.
    """
    import anyio

    call = partial(call_tool_async, url, auth_token, name, arguments)
    return anyio.run(partial(call, policy=policy, timeout=timeout))


async def call_tool_async(
    url: str,
    auth_token: str | None,
    name: str,
    arguments: dict[str, Any],
    *,
    policy: Policy | None = None,
    timeout: float | None = None,
) -> ToolCallResult:
    """`call_tool` for callers already inside an event loop."""

    async def operation(session: ClientSession) -> ToolCallResult:
        result = await session.call_tool(name, arguments)
        return ToolCallResult(
            content=[block.model_dump(mode="json", exclude_none=True) for block in result.content],
            structured_content=result.structuredContent,
            is_error=result.isError,
        )

    return await _exchange(url, auth_token, policy, timeout, operation)


async def _exchange(
    url: str,
    auth_token: str | None,
    policy: Policy | None,
    timeout: float | None,
    operation: Callable[[ClientSession], Awaitable[ResultT]],
) -> ResultT:
    """Open a session to the checked server, run `operation`, translate failures."""
    import anyio

    policy = policy or Policy.from_settings()
    target = await anyio.to_thread.run_sync(check_url, url, policy)
    shown = _shown(target.url)
    guard = _Guard(
        policy=policy,
        timeout=timeout or get_settings().mcp_timeout_seconds,
        pins={(target.scheme, target.host, target.port): target.address},
    )
    headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else {}
    try:
        with anyio.fail_after(guard.timeout), anyio.CancelScope() as scope:
            guard.abort = scope.cancel
            async with _session(target.url, headers, guard) as session:
                return await operation(session)
    except DomainError:
        raise
    except Exception as exc:
        raise _translate(exc, guard, shown) from exc
    # Only reached when the transport aborted the exchange (see `_Guard.abort`).
    raise _translate(RuntimeError("aborted"), guard, shown)


def _shown(url: str) -> str:
    """The URL as messages and logs show it: without query or fragment (they may hold keys)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass
class _Guard:
    """One exchange's limits, pinned addresses, and what made it fail.

    The SDK runs HTTP in background tasks and logs their errors rather than
    raising them, so the transport records why it failed here and calls
    `abort` to end the exchange at once.
    """

    policy: Policy
    timeout: float
    pins: dict[tuple[str, str, int], IPAddress]
    refused: DomainError | None = None
    oversized: bool = False
    error_status: int | None = None  # of the first failed POST (a message or the session start)
    abort: Callable[[], None] = lambda: None


@asynccontextmanager
async def _session(
    url: str, headers: dict[str, str], guard: _Guard
) -> AsyncIterator[ClientSession]:
    import httpx
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    # httpx logs each request URL at INFO; a user's MCP URL may carry a key in its query.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    connect = guard.policy.connect_timeout
    # Streams may idle while a tool works: reads wait as long as the whole exchange may last.
    wait = guard.timeout

    def client_factory(
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(connect, read=wait),
            auth=auth,
            transport=_pinned_transport(guard),
            follow_redirects=False,
            trust_env=False,
        )

    if transport_for(url) == "sse":
        async with (
            sse_client(
                url,
                headers=headers,
                timeout=connect,
                sse_read_timeout=wait,
                httpx_client_factory=client_factory,
            ) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream) as session,
        ):
            await session.initialize()
            yield session
        return
    async with (
        client_factory(headers=headers) as client,
        streamable_http_client(url, http_client=client) as (read_stream, write_stream, _),
        ClientSession(read_stream, write_stream) as session,
    ):
        await session.initialize()
        yield session


def _pinned_transport(guard: _Guard) -> httpx.AsyncBaseTransport:
    """An httpx transport that connects only to checked addresses (see the module docstring)."""
    import anyio
    import httpx

    inner = httpx.AsyncHTTPTransport(retries=0)

    class Capped(httpx.AsyncByteStream):
        def __init__(self, stream: httpx.AsyncByteStream) -> None:
            self._stream = stream

        async def __aiter__(self) -> AsyncIterator[bytes]:
            received = 0
            async for chunk in self._stream:
                received += len(chunk)
                if received > guard.policy.max_bytes:
                    guard.oversized = True
                    guard.abort()
                    raise httpx.ReadError("response too large")
                yield chunk

        async def aclose(self) -> None:
            await self._stream.aclose()

    class Pinned(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            scheme = request.url.scheme
            host = request.url.raw_host.decode("ascii")
            port = request.url.port or _DEFAULT_PORTS.get(scheme, 0)
            address = guard.pins.get((scheme, host, port))
            if address is None:
                try:
                    address = await anyio.to_thread.run_sync(
                        resolve_checked, host, port, guard.policy
                    )
                except DomainError as exc:
                    guard.refused = guard.refused or exc
                    guard.abort()
                    raise httpx.ConnectError(exc.detail, request=request) from exc
                guard.pins[(scheme, host, port)] = address
            extensions = dict(request.extensions)
            if scheme == "https":
                extensions["sni_hostname"] = host
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=str(address)),
                headers=request.headers,
                stream=request.stream,
                extensions=extensions,
            )
            response = await inner.handle_async_request(pinned)
            if response.status_code >= 400 and request.method == "POST":
                guard.error_status = guard.error_status or response.status_code
            assert isinstance(response.stream, httpx.AsyncByteStream)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=Capped(response.stream),
                extensions=response.extensions,
            )

        async def aclose(self) -> None:
            await inner.aclose()

    return Pinned()


def _translate(exc: BaseException, guard: _Guard, url: str) -> DomainError:
    """Turn whatever the SDK raised into the error the caller sees."""
    if guard.refused is not None:
        return guard.refused
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, DomainError):
            return leaf
    return BadGateway(f"The MCP server at {url} {_failure(guard, leaves)}")


def _failure(guard: _Guard, leaves: list[BaseException]) -> str:
    """What went wrong, as the end of a sentence about the server."""
    import httpx
    from mcp.shared.exceptions import McpError

    statuses = [
        leaf.response.status_code for leaf in leaves if isinstance(leaf, httpx.HTTPStatusError)
    ]
    errors = [leaf.error.message for leaf in leaves if isinstance(leaf, McpError)]
    reasons = [
        (guard.oversized, f"sent more than {guard.policy.max_bytes} bytes"),
        (guard.error_status is not None, f"answered {guard.error_status}"),
        (bool(statuses), f"answered {statuses[0] if statuses else ''}"),
        (bool(errors), f"answered with an error: {errors[0] if errors else ''}"),
        (
            any(isinstance(leaf, TimeoutError | httpx.TimeoutException) for leaf in leaves),
            f"did not answer within {guard.timeout:g} s",
        ),
        (any(isinstance(leaf, httpx.TransportError) for leaf in leaves), "could not be reached"),
    ]
    for applies, reason in reasons:
        if applies:
            return reason
    logger.warning("MCP session failed", extra={"error": repr(leaves[0])})
    return "failed"


def _leaves(exc: BaseException, depth: int = 0) -> list[BaseException]:
    """The exception, those inside (nested) exception groups, and their causes."""
    if depth > 8:
        return []
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner, depth + 1)]
    cause = exc.__cause__ or exc.__context__
    return [exc, *(_leaves(cause, depth + 1) if cause is not None else [])]
