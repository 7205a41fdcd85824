"""Stand-ins for gofannon's `services` package inside the sandbox."""
