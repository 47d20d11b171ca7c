from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.utils import timezone

from accounts.management.commands._common import operator
from agentkey.core.cli import OperatorCommand
from grants.management.commands._common import find_grant
from grants.quorum import cycle_approvals
from grants.services import AS_REQUESTED, grant_approve


class Command(OperatorCommand):
    help = (
        "Approve a pending access request. Without --expires-in the agent's requested duration applies "
        "(if any). Per-agent tools need --credential-stdin (with a quorum: on the approval that completes it). "
        "A tool needing several approvers stays pending until enough distinct people approved."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("grant_id")
        parser.add_argument("--expires-in", default=None, help="Access lifetime, 1h to 30d, e.g. 8h.")
        parser.add_argument(
            "--no-expiry", action="store_true", help="No expiry, even if the agent asked for a duration."
        )
        parser.add_argument(
            "--credential-stdin", action="store_true", help="Read this agent's credential from stdin."
        )

    def run(self, **options: Any) -> dict[str, Any]:
        grant = find_grant(self, options["grant_id"])
        lifetime = self.parse_duration_arg(options["expires_in"], "--expires-in")
        credential = self.read_secret("credential") if options["credential_stdin"] else None
        grant = grant_approve(
            grant=grant,
            reviewer=operator(),
            expires_at=timezone.now() + lifetime
            if lifetime
            else (None if options["no_expiry"] else AS_REQUESTED),
            credential=credential,
        )
        out: dict[str, Any] = {
            "grant_id": str(grant.id),
            "status": grant.status,
            "agent": grant.agent.name,
            "tool": grant.tool.name,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        }
        required = grant.tool.required_approvals
        if required > 1:
            # N-of-M: the request stays pending until enough distinct people approved.
            out["approvals"] = f"{len(cycle_approvals(grant))} of {required}"
        return out
