"""Stand-ins for gofannon's `agent_factory` package inside the sandbox."""
