"""What agent code sees inside the sandbox: its globals and the way back to the platform.

Loaded in the template process (on the path given to the template), so it
is already imported when a run forks. Every outbound request of a run, the
platform's included, goes over the egress proxy's Unix socket: the request
is sent to the proxy with its real URL in `X-Sandbox-Target`, and the proxy
(in the host, outside the sandbox) decides whether it may leave. Calls to
the platform carry the run's short-lived token, scoped to the calling user.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import httpx

TARGET_HEADER = "X-Sandbox-Target"
_PREVIEW = 200
_CHARS_PER_TOKEN = 2.5
_DEFAULT_CONTEXT_WINDOW = 128000
_active: dict[str, Runtime] = {}
_egress: dict[str, str] = {}


def _proxied(request: httpx.Request) -> httpx.Request:
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"host"]
    headers += [(b"Host", b"egress"), (TARGET_HEADER.encode(), str(request.url).encode())]
    return httpx.Request(
        request.method,
        "http://egress/",
        headers=headers,
        stream=request.stream,
        extensions=request.extensions,
    )


class EgressTransport(httpx.AsyncHTTPTransport):
    """An async transport that sends every request through the egress proxy.

    It stands in for httpx's default transport inside the sandbox, so any
    `httpx.AsyncClient()` agent code creates (gofannon's header makes one)
    goes out the only way there is; transport options are ignored.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(uds=_egress["socket"], verify=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward one request to the proxy."""
        return await super().handle_async_request(_proxied(request))


class SyncEgressTransport(httpx.HTTPTransport):
    """The blocking twin of `EgressTransport` (for `httpx.Client` and the data store)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(uds=_egress["socket"], verify=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Forward one request to the proxy."""
        return super().handle_request(_proxied(request))


def _route_httpx_through_egress(socket_path: str) -> None:
    _egress["socket"] = socket_path
    client_module: Any = httpx._client  # the module that picks httpx's default transports
    client_module.AsyncHTTPTransport = EgressTransport
    client_module.HTTPTransport = SyncEgressTransport


class PlatformError(RuntimeError):
    """The platform refused or failed a call made on the agent's behalf."""


def _raise_for(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    if response.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else body
        raise PlatformError(f"{response.status_code}: {detail}")
    return body


class Runtime:
    """One run's connection to the platform and its globals.

    Args:
        context: What the host passed for this run: `platformUrl`, `token`,
            `egressSocket`, `agentName`, `contextWindows`, `llmSettings`.
        emit: Sends a trace event to the host.
    """

    def __init__(self, context: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
        self.context = context
        self.emit = emit
        self.ops_log: list[dict[str, Any]] = []
        _route_httpx_through_egress(context["egressSocket"])
        headers = {"Authorization": f"Bearer {context['token']}"}
        self.platform = httpx.AsyncClient(
            base_url=context["platformUrl"],
            headers=headers,
            timeout=httpx.Timeout(600.0, connect=10.0),
        )
        self.platform_sync = httpx.Client(
            base_url=context["platformUrl"],
            headers=headers,
            timeout=60.0,
        )
        self.http_client = httpx.AsyncClient(follow_redirects=True, timeout=60.0)
        _active["run"] = self

    async def post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST JSON to a platform route with the run's token; return the JSON answer."""
        return _raise_for(await self.platform.post(path, json=payload))

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """Call a platform route synchronously with the run's token."""
        response = self.platform_sync.request(method, path, json=payload)
        return _raise_for(response)

    async def aclose(self) -> None:
        """Close every client the run opened."""
        await self.http_client.aclose()
        await self.platform.aclose()
        self.platform_sync.close()

    def globals(self) -> dict[str, Any]:
        """The module namespace agent code runs in (gofannon's `exec_globals`)."""
        import asyncio
        import re

        from agent_factory.remote_mcp_client import RemoteMCPClient
        from services.llm_service import call_llm

        return {
            "__name__": "agent",
            "__builtins__": __builtins__,
            "RemoteMCPClient": RemoteMCPClient,
            "call_llm": call_llm,
            "get_context_window": self.get_context_window,
            "count_tokens": count_tokens,
            "count_message_tokens": count_message_tokens,
            "asyncio": asyncio,
            "httpx": httpx,
            "re": re,
            "json": json,
            "http_client": self.http_client,
            "gofannon_client": GofannonClient(self),
            "data_store": DataStore(self, self.context.get("agentName") or "unknown", "default"),
            "_sandbox_runtime": self,
        }

    def get_context_window(self, provider: str, model: str) -> int:
        """The context window of a catalog model, in tokens (128000 when unknown)."""
        windows: dict[str, int] = self.context.get("contextWindows") or {}
        return int(windows.get(f"{provider}/{model}", _DEFAULT_CONTEXT_WINDOW))


def current() -> Runtime:
    """The runtime of the run this process serves."""
    if "run" not in _active:
        raise RuntimeError("No sandbox run is active")
    return _active["run"]


def count_tokens(text: str, provider: str = "anthropic", model: str = "claude-opus-4-6") -> int:
    """A conservative token estimate for text (2.5 characters a token)."""
    return int(len(str(text)) / _CHARS_PER_TOKEN)


def count_message_tokens(
    messages: list[Any], provider: str = "anthropic", model: str = "claude-opus-4-6"
) -> int:
    """A conservative token estimate for a list of chat messages."""
    total = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return int(total / _CHARS_PER_TOKEN)


class GofannonClient:
    """`gofannon_client`: calls another agent of the user through the platform.

    The platform checks the call against the run's token: only agents the
    calling agent imported, no agent already on the call chain (cycles), and
    no deeper than the configured depth.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def call(self, agent_name: str, input_dict: dict[str, Any]) -> Any:
        """Run the named agent with `input_dict` and return its result."""
        answer = await self._runtime.post(
            "/agents/run-code/call", {"agentName": agent_name, "inputDict": input_dict}
        )
        self._runtime.emit({"trace": {"type": "agent_call", "called_agent": agent_name}})
        if answer.get("error"):
            raise PlatformError(f"Agent '{agent_name}' failed: {answer['error']}")
        return answer.get("result")


def _preview(value: Any) -> Any:
    if value is None:
        return None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…"


class DataStore:
    """`data_store`: the user's key-value records, one namespace at a time (synchronous)."""

    def __init__(self, runtime: Runtime, agent: str, namespace: str) -> None:
        self._runtime = runtime
        self._agent = agent
        self._namespace = namespace

    def _log(self, op: str, **fields: Any) -> None:
        entry = {
            "op": op,
            "namespace": self._namespace,
            "agent": self._agent,
            "ts": datetime.datetime.now(datetime.UTC).isoformat(),
            **fields,
        }
        self._runtime.ops_log.append(entry)
        traced = {k: v for k, v in entry.items() if k not in ("op", "agent", "ts")}
        self._runtime.emit({"trace": {"type": "data_store", "operation": op, **traced}})

    def _call(self, op: str, **arguments: Any) -> Any:
        payload = {"op": op, "namespace": self._namespace, "agent": self._agent, **arguments}
        return self._runtime.request("POST", "/data-store/ops", payload)["value"]

    def use_namespace(self, namespace: str) -> DataStore:
        """A data store scoped to another namespace (sharing the operations log)."""
        return DataStore(self._runtime, self._agent, namespace)

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under `key`, or `default`."""
        record = self._call("get", key=key)
        value = record["value"] if record else default
        self._log("get", key=key, found=bool(record), valuePreview=_preview(value))
        return value

    def set(self, key: str, value: Any, metadata: dict[str, Any] | None = None) -> None:
        """Store `value` under `key`."""
        self._call("set", key=key, value=value, metadata=metadata)
        self._log("set", key=key, valuePreview=_preview(value))

    def delete(self, key: str) -> bool:
        """Delete `key`; True when it existed."""
        found = bool(self._call("delete", key=key))
        self._log("delete", key=key, found=found)
        return found

    def list_keys(self, prefix: str | None = None) -> list[str]:
        """The namespace's keys, optionally only those starting with `prefix`."""
        keys: list[str] = self._call("list_keys", prefix=prefix)
        self._log("list_keys", prefix=prefix, count=len(keys))
        return keys

    def list_namespaces(self) -> list[str]:
        """Every namespace holding the user's data, sorted."""
        namespaces: list[str] = self._call("list_namespaces")
        self._log("list_namespaces", count=len(namespaces))
        return namespaces

    def get_all(self) -> dict[str, Any]:
        """Every key and value of the namespace."""
        values: dict[str, Any] = self._call("get_all")
        self._log("get_all", count=len(values))
        return values

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The values of the given keys that exist."""
        values: dict[str, Any] = self._call("get_many", keys=keys)
        self._log("get_many", requested=len(keys), found=len(values))
        return values

    def set_many(self, items: dict[str, Any], metadata: dict[str, Any] | None = None) -> int:
        """Store several values at once; returns how many."""
        count: int = self._call("set_many", items=items, metadata=metadata)
        self._log("set_many", count=count, keys=list(items)[:10])
        return count

    def clear(self) -> int:
        """Delete every record of the namespace; returns how many."""
        count: int = self._call("clear")
        self._log("clear", count=count)
        return count
