"""The agent-platform half: accounts and allowance, chat, agents and their tools."""
