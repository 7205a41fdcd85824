"""Local development and test tooling: emulators, the gateway, tokens. Never deployed."""
