"""A real MCP server built with the `mcp` SDK (FastMCP, 1.x), on 127.0.0.1.

`running_mcp_server()` serves the same tools twice, each on its own port:
streamable HTTP at `/mcp` and SSE at `/sse` (messages at `/messages/`).
Tools: `add(a, b)`, `echo(text)`, `auth_header()` (the Authorization header
the server received, so tests can see the token arrive), `fail(message)`
(raises, so the call result is an error), `sleep(seconds)` and
`weather(city)` (structured output).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from pydantic import BaseModel


class Weather(BaseModel):
    city: str
    celsius: float


@dataclass(frozen=True)
class McpServer:
    """Where the fixture's server listens."""

    streamable_url: str
    sse_url: str

    @property
    def ports(self) -> list[int]:
        return [int(url.split(":")[2].split("/")[0]) for url in (self.streamable_url, self.sse_url)]


def build() -> FastMCP:
    server = FastMCP("series-test-tools", host="127.0.0.1")

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="The Authorization header this server received.")
    def auth_header(ctx: Context) -> str:
        request = ctx.request_context.request
        return request.headers.get("authorization", "") if request is not None else ""

    @server.tool(description="Always fails with the given message.")
    def fail(message: str) -> str:
        raise ValueError(message)

    @server.tool(description="Answer after the given number of seconds.")
    async def sleep(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "awake"

    @server.tool(description="Made-up weather for a city.")
    def weather(city: str) -> Weather:
        return Weather(city=city, celsius=21.5)

    return server


@contextmanager
def _uvicorn(app) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "MCP server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_mcp_server() -> Iterator[McpServer]:
    """Serve the test tools over streamable HTTP and SSE until the block ends."""
    with _uvicorn(build().streamable_http_app()) as http_port, _uvicorn(build().sse_app()) as sse:
        yield McpServer(
            streamable_url=f"http://127.0.0.1:{http_port}/mcp",
            sse_url=f"http://127.0.0.1:{sse}/sse",
        )
