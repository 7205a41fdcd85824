"""Agent code generation (`POST /agents/generate-code`).

The prompt is built from what the agent may use: the selected tools of each
MCP server (listed live from the server, with their input schemas, through
the connectors' guarded client and the caller's outbound budget), swagger
specs, the other agents it may call (their docs, only the caller's own),
the models it may invoke, the data store, and the input and output schemas.
The model, through the LLM gateway and charged to the caller, answers with
JSON `{friendlyName, docstring, body}`; `body` is the body of `run`, which the
platform wraps in gofannon 81e4595's standard header. The answer is read
leniently and checked (`codegen.generate`): the wrapped code must parse and
define `async def run`, or the model is asked once more.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.agents import agents, codegen, connectors
from shared.llm import catalog, gateway
from shared.platform.auth import Principal
from shared.platform.errors import Forbidden, NotFound
from shared.platform.models import Model
from shared.platform.values import DocId, StorableMap

SPEC_CHARS = 30_000
HEADER = """from agent_factory.remote_mcp_client import RemoteMCPClient
from services.llm_service import call_llm
import httpx

async def run(input_dict, tools):
    mcpc = { url : RemoteMCPClient(remote_url = url) for url in tools.keys() }
    http_client = httpx.AsyncClient()
    try:"""
FOOTER = """
    finally:
        await http_client.aclose()"""
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\s*```\s*$", re.DOTALL)
_ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "friendlyName": {"type": "string"},
        "docstring": {"type": "string"},
        "body": {"type": "string"},
    },
    "required": ["friendlyName", "docstring", "body"],
    "additionalProperties": False,
}
_CAMEL = ConfigDict(
    alias_generator=to_camel, populate_by_name=True, extra="forbid", protected_namespaces=()
)


class GenerateCodeRequest(Model):
    """The body of `POST /agents/generate-code`, as gofannon's agent editor sends it."""

    model_config = _CAMEL

    description: str = Field(min_length=1, max_length=20_000)
    tools: dict[agents.ToolUrl, list[agents.ToolName]] = Field(default_factory=dict, max_length=10)
    input_schema: StorableMap | None = None
    output_schema: StorableMap | None = None
    model_config_: agents.ModelChoice = Field(alias="modelConfig")
    invokable_models: list[agents.ModelChoice] | None = Field(default=None, max_length=20)
    swagger_specs: list[agents.SwaggerSpec] | None = Field(default=None, max_length=20)
    gofannon_agents: list[DocId] | None = Field(default=None, max_length=50)
    built_in_tools: list[str] = Field(default_factory=list, max_length=10)


class GeneratedAgentCode(Model):
    """The generated agent: its code, a proposed friendly name, its docstring, the thoughts."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    code: str
    friendly_name: str
    docstring: str
    thoughts: str | None = None


def generate_code(principal: Principal, request: GenerateCodeRequest) -> GeneratedAgentCode:
    """Have the composer model write the agent, charged to the caller.

    Raises:
        Forbidden: The caller has no user yet.
        InvalidInput: The composer model does not fit the catalog.
        BadRequest: An MCP server's URL may not be fetched.
        RateLimited: The caller's outbound budget is spent.
        PaymentRequired: The allowance cannot cover the call.
        Unavailable: The provider failed (nothing is charged).
        BadGateway: An MCP server failed, or the model's answer was unusable twice
            (both calls charged); the detail says what was wrong.
    """
    if not principal.user_id:
        raise Forbidden("Create your user first")
    composer = request.model_config_
    llm_request = gateway.LlmRequest(
        provider=composer.provider,
        model=composer.model,
        messages=[
            gateway.Message(role="system", content=build_prompt(principal, request)),
            gateway.Message(role="user", content=request.description),
        ],
        parameters=composer.parameters,
        responseSchema=_ANSWER_SCHEMA,
    )
    return codegen.generate(
        principal,
        principal.user_id,
        llm_request,
        source="agent-generate-code",
        check=_checked,
        what="the agent's code as JSON",
    )


def wrap(body: str) -> str:
    """The full agent code: the standard header, `body` inside `try`, the footer."""
    lines = textwrap.dedent(_unfenced(body)).split("\n")
    indented = "\n".join("        " + line if line.strip() else "" for line in lines)
    return f"{HEADER}\n{indented}\n{FOOTER}\n"


def _unfenced(text: str) -> str:
    fenced = _FENCE.match(text)
    return fenced.group(1) if fenced else text


_REPAIRS = 8


def _parsed(body: str) -> tuple[str, ast.Module]:
    """The wrapped code of `body` and its syntax tree, repairing two slips of models.

    Models writing code inside JSON often close a bracket once more than they
    opened (taking the JSON's closing brace for the code's) and append an
    explanation after a closing code fence. When the body does not parse as
    it is, it is cut at a closing fence and each closing bracket the parser
    reports as unmatched is removed (a few at most); what is returned always
    parses.

    Raises:
        SyntaxError: The body does not parse, repaired or not (the first error).
    """
    code = wrap(body)
    try:
        return code, ast.parse(code)
    except SyntaxError as first:
        lines = wrap(_unfenced(body).split("\n```", 1)[0]).split("\n")
        for _ in range(_REPAIRS):
            try:
                code = "\n".join(lines)
                return code, ast.parse(code)
            except SyntaxError as exc:
                if not (exc.msg.startswith("unmatched ") and exc.lineno and exc.offset):
                    break
                line = lines[exc.lineno - 1]
                lines[exc.lineno - 1] = line[: exc.offset - 1] + line[exc.offset :]
        raise first from None


def _checked(answer: dict[str, Any], result: gateway.LlmResult) -> GeneratedAgentCode:
    """The agent from the model's answer, once its code parses and defines `async def run`.

    Raises:
        codegen.Unusable: No body, or code that does not parse.
    """
    body = codegen.string_field(answer, "body")
    if not body.strip():
        raise codegen.Unusable("the field `body` was empty")
    try:
        code, tree = _parsed(body)
    except SyntaxError as exc:
        line = (exc.lineno or 0) - HEADER.count("\n") - 1
        raise codegen.Unusable(f"the body is not valid Python ({exc.msg}, line {line})") from exc
    if not any(isinstance(node, ast.AsyncFunctionDef) and node.name == "run" for node in tree.body):
        raise codegen.Unusable("the code does not define `async def run`")
    name = codegen.string_field(answer, "friendlyName", required=False)
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:100] or "unnamed_agent"
    return GeneratedAgentCode(
        code=code,
        friendly_name=slug,
        docstring=codegen.string_field(answer, "docstring", required=False),
        thoughts=result.thoughts,
    )


def build_prompt(principal: Principal, request: GenerateCodeRequest) -> str:
    """The composer's instructions: what the agent may use, how, and what it must return."""
    parts = [
        _mcp_docs(principal, request.tools),
        _swagger_docs(request.swagger_specs or []),
        _agent_docs(principal.user_id or "", request.gofannon_agents or []),
        _model_docs(request.invokable_models or []),
        _DATA_STORE,
        _WHAT_TO_DO.format(
            input_schema=json.dumps(request.input_schema or {}, indent=2),
            output_schema=json.dumps(request.output_schema or {}, indent=2),
        ),
    ]
    return "\n\n".join(part for part in parts if part)


def _mcp_docs(principal: Principal, tools: dict[str, list[str]]) -> str:
    sections = []
    for url, selected in tools.items():
        listing = connectors.list_tools_for(principal, connectors.ListToolsRequest(mcp_url=url))
        docs = [
            f"### `{tool.name}`\n{tool.description}\nInput schema: {json.dumps(tool.input_schema)}"
            for tool in listing.tools
            if tool.name in selected
        ]
        if docs:
            sections.append(f"## Tools from {url}\n\n" + "\n\n".join(docs))
    if not sections:
        return ""
    usage = (
        "## How to use MCP tools\n\n"
        "`mcpc` maps each server URL to a client. Call a tool with\n"
        "`result = await mcpc[url].call(tool_name='<name>', **arguments)`;\n"
        "`result.content` is a list of content blocks (text blocks have `.text`)."
    )
    return "\n\n".join([*sections, usage])


def _swagger_docs(specs: list[agents.SwaggerSpec]) -> str:
    if not specs:
        return ""
    sections = [
        f"### {spec.name}\n```\n{spec.content[:SPEC_CHARS]}\n```" for spec in specs if spec.content
    ]
    return (
        "## HTTP APIs\n\nCall these APIs with `await http_client.get(...)`/`.post(...)` "
        "(an `httpx.AsyncClient`).\n\n" + "\n\n".join(sections)
    )


def _agent_docs(user_id: str, agent_ids: list[str]) -> str:
    found = agents.documented(user_id, agent_ids) if user_id else []
    if not found:
        return ""
    docs = [
        f"### Agent `{agent['name']}`\n{agent['description']}\n```\n{agent['docstring']}\n```\n"
        f"Call it with `result = await gofannon_client.call(agent_name='{agent['name']}', "
        "input_dict={...})`."
        for agent in found
    ]
    return "## Other agents\n\n" + "\n\n".join(docs)


def _model_docs(models: list[agents.ModelChoice]) -> str:
    if not models:
        return ""
    docs = []
    for choice in models:
        try:
            window = f"Context window: {catalog.model(choice.provider, choice.model).contextWindow}"
        except NotFound:
            window = "Not in the catalog: calls to it will fail."
        docs.append(
            f"### `{choice.provider}/{choice.model}`\n{window}\n```python\n"
            f"content, thoughts = await call_llm(provider={json.dumps(choice.provider)}, "
            f"model={json.dumps(choice.model)}, "
            'messages=[{"role": "user", "content": "..."}], '
            f"parameters={json.dumps(choice.parameters)})\n```"
        )
    return "## Models the agent may call\n\n" + "\n\n".join(docs)


_DATA_STORE = """## Data store

`data_store` keeps JSON values between runs: `data_store.get(key, default)`,
`data_store.set(key, value)`, `data_store.delete(key)`, `data_store.list_keys()`;
`data_store.use_namespace(name)` returns the same interface for another namespace."""

_WHAT_TO_DO = """## What to write

Write the body of `async def run(input_dict, tools)`: it runs inside a `try:` block
where `mcpc`, `http_client`, `call_llm`, `gofannon_client` and `data_store` are
defined. Do not repeat the function signature or imports of those names; other
imports go inside the body. `input_dict` follows this schema:
{input_schema}
The body must `return` a dict following this schema:
{output_schema}

Answer with one JSON object: `friendlyName` (a snake_case name for the agent),
`docstring` (what the agent does, its inputs and outputs) and `body` (the Python
code of the body, not indented), nothing else. `body` is Python code, never prose.
For an agent that repeats its input, the answer would be:
{{"friendlyName": "repeat_input", "docstring": "Answers with the input text.",
"body": "text = input_dict['inputText']\nreturn {{'outputText': text}}"}}"""
