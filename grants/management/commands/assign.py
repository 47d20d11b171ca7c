from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.utils import timezone

from accounts.management.commands._common import find_agent, operator
from agentkey.core.cli import OperatorCommand, OperatorError
from catalog.models import CredentialMode, Tool
from grants.services import grant_assign


class Command(OperatorCommand):
    help = "Give an agent access to a tool directly, without a request."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--agent", required=True, help="Agent id.")
        parser.add_argument("--tool", required=True, help="Tool id.")
        parser.add_argument("--expires-in", default=None, help="Access lifetime, 1h to 30d.")

    def run(self, **options: Any) -> dict[str, Any]:
        agent = find_agent(self, options["agent"])
        tool = Tool.objects.filter(id=self.parse_uuid(options["tool"], "tool"), org_id=agent.org_id).first()
        if tool is None:
            raise OperatorError("No such tool in the agent's organization.", "Check the tool id.")
        lifetime = self.parse_duration_arg(options["expires_in"], "--expires-in")
        credential = (
            self.read_secret("credential") if tool.credential_mode == CredentialMode.PER_AGENT else None
        )
        grant = grant_assign(
            agent=agent,
            tool=tool,
            actor=operator(),
            expires_at=timezone.now() + lifetime if lifetime else None,
            credential=credential,
        )
        return {"grant_id": str(grant.id), "status": grant.status}
