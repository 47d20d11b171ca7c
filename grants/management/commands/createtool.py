from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from accounts.management.commands._common import find_org, operator
from agentkey.core.cli import OperatorCommand
from catalog.models import AuthType, CredentialMode
from grants.services import tool_add


class Command(OperatorCommand):
    help = (
        "Add a tool to an organization's catalog. For shared tools the credential is read from stdin "
        "(or pass --no-credential to add it later). Pending suggestions for the tool are accepted and "
        "their backers get pending access requests."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", required=True, help="Organization id or slug.")
        parser.add_argument("--name", required=True)
        parser.add_argument("--url", default="")
        parser.add_argument("--description", default="")
        parser.add_argument("--auth-type", default=AuthType.API_KEY, choices=AuthType.values)
        parser.add_argument("--mode", default=CredentialMode.SHARED, choices=CredentialMode.values)
        parser.add_argument(
            "--instructions", default="", help="Usage guide shown to agents with the credential."
        )
        parser.add_argument(
            "--config-key", default="", help="Stable key for catalog-as-code (default: from name)."
        )
        parser.add_argument(
            "--no-credential", action="store_true", help="Shared tool without a credential yet."
        )

    def run(self, **options: Any) -> dict[str, Any]:
        org = find_org(options["org"])
        credential = None
        if options["mode"] == CredentialMode.SHARED and not options["no_credential"]:
            credential = self.read_secret("credential")
        created = tool_add(
            org=org,
            actor=operator(),
            name=options["name"],
            url=options["url"],
            description=options["description"],
            auth_type=options["auth_type"],
            credential_mode=options["mode"],
            credential=credential,
            usage_guide=options["instructions"],
            config_key=options["config_key"],
        )
        return {
            "tool_id": str(created.tool.id),
            "name": created.tool.name,
            "config_key": created.tool.config_key,
            "accepted_suggestions": [str(s.id) for s in created.accepted],
            "pending_requests_opened": len(created.backers),
        }
