from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from accounts.management.commands._common import operator
from agentkey.core.cli import OperatorCommand
from grants.management.commands._common import find_grant
from grants.services import grant_revoke


class Command(OperatorCommand):
    help = "Revoke approved access; the agent's very next credential fetch is refused."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("grant_id")
        parser.add_argument("--reason", default="")

    def run(self, **options: Any) -> dict[str, Any]:
        grant = grant_revoke(
            grant=find_grant(self, options["grant_id"]), actor=operator(), reason=options["reason"]
        )
        return {"grant_id": str(grant.id), "status": grant.status}
