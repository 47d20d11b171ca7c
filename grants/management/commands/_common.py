"""Lookups shared by the grants commands."""

from __future__ import annotations

from agentkey.core.cli import OperatorCommand, OperatorError
from grants.models import AccessGrant


def find_grant(command: OperatorCommand, ref: str) -> AccessGrant:
    grant = (
        AccessGrant.objects.select_related("agent", "tool")
        .filter(id=command.parse_uuid(ref, "grant"))
        .first()
    )
    if grant is None:
        raise OperatorError(
            f"No access grant {ref}.",
            "Use the request_id the agent received, or find the grant in the admin under Access grants.",
        )
    return grant
