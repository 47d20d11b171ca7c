from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.utils import timezone

from accounts.management.commands._common import find_member, find_org, operator
from accounts.services import agent_create
from agentkey.core.cli import OperatorCommand


class Command(OperatorCommand):
    help = "Create an agent; prints agent_id and api_key. The key is shown once and never again."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", required=True, help="Organization id or slug.")
        parser.add_argument("--name", required=True)
        parser.add_argument("--description", default="")
        parser.add_argument("--key-expires-in", default=None, help="Optional key lifetime, e.g. 90d.")
        parser.add_argument(
            "--owner",
            default=None,
            metavar="EMAIL",
            help="The member accountable for the agent (required once the organization has members).",
        )
        parser.add_argument("--valid-for", default=None, help="Optional end of validity from now, e.g. 90d.")

    def run(self, **options: Any) -> dict[str, Any]:
        org = find_org(options["org"])
        lifetime = self.parse_duration_arg(options["key_expires_in"], "--key-expires-in")
        validity = self.parse_duration_arg(options["valid_for"], "--valid-for")
        owner = find_member(org, options["owner"]) if options["owner"] else None
        issued = agent_create(
            owner=owner,
            valid_until=timezone.now() + validity if validity else None,
            org=org,
            name=options["name"],
            description=options["description"],
            actor=operator(),
            key_expires_at=timezone.now() + lifetime if lifetime else None,
        )
        return {
            "agent_id": str(issued.agent.id),
            "name": issued.agent.name,
            "org_id": str(org.id),
            "api_key": issued.key.plaintext,
            "key_expires_at": issued.key.key.expires_at.isoformat() if issued.key.key.expires_at else None,
            **({"owner": issued.agent.owner.email} if issued.agent.owner else {}),
            **({"valid_until": issued.agent.valid_until.isoformat()} if issued.agent.valid_until else {}),
        }
