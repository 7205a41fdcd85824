"""The agent code runner: the warm template, the host that supervises runs, the egress proxy.

`compat/` holds the modules agent code imports inside the sandbox
(`agent_factory.remote_mcp_client`, `litellm`, `services.llm_service`) and
the runtime that provides its globals; they run only in sandboxed children.
"""
