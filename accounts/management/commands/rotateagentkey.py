from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.utils import timezone

from accounts.management.commands._common import find_agent, operator
from accounts.services import agent_key_rotate
from agentkey.core.cli import OperatorCommand


class Command(OperatorCommand):
    help = "Issue a new key for an agent; the old key dies now or after --grace. Prints the new key once."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("agent_id")
        parser.add_argument("--grace", default=None, help="Keep the old key working this long, e.g. 1h.")
        parser.add_argument(
            "--key-expires-in", default=None, help="Optional lifetime of the new key, e.g. 90d."
        )

    def run(self, **options: Any) -> dict[str, Any]:
        agent = find_agent(self, options["agent_id"])
        grace = self.parse_duration_arg(options["grace"], "--grace")
        lifetime = self.parse_duration_arg(options["key_expires_in"], "--key-expires-in")
        issued = agent_key_rotate(
            agent=agent,
            actor=operator(),
            grace=grace,
            expires_at=timezone.now() + lifetime if lifetime else None,
        )
        return {
            "agent_id": str(agent.id),
            "api_key": issued.plaintext,
            "old_keys_valid_until": issued.previous_keys_end.isoformat()
            if issued.previous_keys_end
            else None,
        }
