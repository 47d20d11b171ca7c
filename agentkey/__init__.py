"""AgentKey: a self-hosted credential broker for AI agents (composition root)."""
