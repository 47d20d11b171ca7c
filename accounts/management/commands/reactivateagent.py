from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from accounts.management.commands._common import find_agent, operator
from accounts.services import agent_reactivate
from agentkey.core.cli import OperatorCommand


class Command(OperatorCommand):
    help = "Reactivate an agent."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("agent_id")

    def run(self, **options: Any) -> dict[str, Any]:
        agent = agent_reactivate(agent=find_agent(self, options["agent_id"]), actor=operator())
        return {"agent_id": str(agent.id), "status": agent.status}
