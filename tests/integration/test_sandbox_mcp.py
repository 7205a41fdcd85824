"""`agent_factory.remote_mcp_client` inside the sandbox, against a fake of the connectors routes.

Agent code written for gofannon (both generations start with the same
header) lists and calls MCP tools; the sandbox's client sends those calls
to the platform's `/mcp/tools` and `/mcp/call` with the run's token.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator

import pytest

from shared.agents.sandbox.runner import Runner
from tests.fakes.connectors import FakeConnectors
from tests.fakes.server import serving

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs a root host")

MCP_URL = "http://tools.example/mcp"
HEADER_81E4595 = """from agent_factory.remote_mcp_client import RemoteMCPClient
from services.llm_service import call_llm
import httpx

async def run(input_dict, tools):
    mcpc = { url : RemoteMCPClient(remote_url = url) for url in tools.keys() }
    http_client = httpx.AsyncClient()
    try:
"""
FOOTER = """
    finally:
        await http_client.aclose()
"""


@pytest.fixture(scope="module")
def platform() -> Iterator[tuple[str, FakeConnectors, Runner]]:
    fake = FakeConnectors()
    with serving(fake.app()) as url:
        runner = Runner(extra_origins=(url,))
        yield url, fake, runner
        runner.close()


def wrap(body: str) -> str:
    return HEADER_81E4595 + textwrap.indent(textwrap.dedent(body), " " * 8) + FOOTER


def test_generated_agent_lists_and_calls_tools(platform):
    url, fake, runner = platform
    code = wrap(
        """
        client = mcpc['http://tools.example/mcp']
        listed = await client.list_tools()
        doc = client.get_tool_doc('add')
        result = await client.call(tool_name='add', a=input_dict['a'], b=2)
        return {
            'tools': [t.name for t in listed],
            'doc': doc,
            'text': result.content[0].text,
            'data': result.data,
            'structured': result.structured_content,
            'is_error': result.is_error,
        }
        """
    )
    context = {"platformUrl": url, "token": "run:token", "agentName": "adder"}

    events = list(runner.run(code, {"a": 40}, {MCP_URL: ["add"]}, context))

    done = events[-1]["done"]
    assert done["outcome"] == "success", done["error"]
    assert done["result"]["tools"] == ["add"]
    assert "`a` (int, required): First" in done["result"]["doc"]
    assert done["result"]["text"] == "42"
    assert done["result"]["data"] == 42
    assert done["result"]["structured"] == {"result": 42}
    assert done["result"]["is_error"] is False
    kinds = [(kind, auth, body["mcp_url"]) for kind, auth, body in fake.calls[-2:]]
    assert kinds == [("tools", "Bearer run:token", MCP_URL), ("call", "Bearer run:token", MCP_URL)]
    assert fake.calls[-1][2]["arguments"] == {"a": 40, "b": 2}


def test_unknown_tool_is_the_agents_error(platform):
    url, _, runner = platform
    code = wrap("return await mcpc['http://tools.example/mcp'].call(tool_name='nope')\n")
    context = {"platformUrl": url, "token": "run:token", "agentName": "adder"}

    done = list(runner.run(code, {}, {MCP_URL: ["nope"]}, context))[-1]["done"]

    assert done["outcome"] == "error"
    assert "ValueError: Tool 'nope' not found on the server." in done["error"]


def test_platform_refusal_reaches_agent_code_as_an_exception(platform):
    url, _, runner = platform
    code = (
        "async def run(input_dict, tools):\n"
        "    r = await http_client.post(input_dict['url'] + '/missing')\n"
        "    return r.status_code\n"
    )
    context = {"platformUrl": url, "token": "run:token", "agentName": "adder"}

    done = list(runner.run(code, {"url": url}, {}, context))[-1]["done"]

    assert done == {**done, "outcome": "success", "result": 404}
