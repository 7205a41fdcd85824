"""MCP tools/list latency: the guarded client against the bare `mcp` SDK, in one run.

Both open a fresh session per sample (as `/mcp/tools` does) to the test
FastMCP server on 127.0.0.1, over streamable HTTP and over SSE; the two
clients alternate so machine noise hits both alike. The difference is the
guard's cost: resolving and checking the address, pinning the connection,
capping the body.

    PYTHONPATH=. .venv/bin/python bench/mcp_latency.py [--runs 50]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import anyio
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from bench.common import Row, percentile, table
from shared.agents import connectors
from shared.platform.addresses import parse_allow_entry
from shared.platform.fetch import Policy
from tests.fakes.mcp_server import running_mcp_server


async def bare_list(url: str) -> int:
    if url.endswith("/sse"):
        async with sse_client(url) as streams, ClientSession(*streams) as session:
            await session.initialize()
            return len((await session.list_tools()).tools)
    async with (
        streamable_http_client(url) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return len((await session.list_tools()).tools)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(runs: int = 50) -> list[Row]:
    """Guarded `list_tools` next to the bare SDK, p50 and p95 per transport (milliseconds)."""
    rows = []
    with running_mcp_server() as server:
        policy = Policy(allowlist=tuple(parse_allow_entry(f"127.0.0.1:{p}") for p in server.ports))
        for transport, url in (("streamable HTTP", server.streamable_url), ("SSE", server.sse_url)):
            guarded: list[float] = []
            bare: list[float] = []
            for _ in range(runs):
                guarded.append(timed(lambda u=url: connectors.list_tools(u, None, policy=policy)))
                bare.append(timed(lambda u=url: anyio.run(bare_list, u)))
            for name, fraction in (("p50", 0.5), ("p95", 0.95)):
                rows.append(
                    Row(
                        f"MCP tools/list over {transport} {name} ({runs} sessions)",
                        percentile(guarded, fraction),
                        percentile(bare, fraction),
                        "the bare mcp SDK client",
                    )
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(table(measure(args.runs)))


if __name__ == "__main__":
    main()
