from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from accounts.management.commands._common import operator
from agentkey.core.cli import OperatorCommand
from grants.management.commands._common import find_grant
from grants.services import grant_deny


class Command(OperatorCommand):
    help = "Deny a pending access request; the agent sees the reason."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("grant_id")
        parser.add_argument("--reason", required=True)

    def run(self, **options: Any) -> dict[str, Any]:
        grant = grant_deny(
            grant=find_grant(self, options["grant_id"]), reviewer=operator(), reason=options["reason"]
        )
        return {"grant_id": str(grant.id), "status": grant.status, "reason": grant.denial_reason}
