"""Dashboard pages that need grants: home, inbox, agent and tool detail, audit log."""
