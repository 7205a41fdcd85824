"""The `sandbox` function: runs agent code; private, with no credentials of its own."""

from __future__ import annotations

from shared.agents.sandbox import host
from shared.platform.service import service_function

sandbox = service_function(host.SandboxCall, host.serve)
