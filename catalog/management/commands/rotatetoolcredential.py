from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from accounts.management.commands._common import operator
from agentkey.core.cli import OperatorCommand, OperatorError
from catalog.models import Tool
from catalog.services import tool_rotate_credential


class Command(OperatorCommand):
    help = "Replace a shared tool's credential with the value on stdin. The next vend returns it."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("tool_id")

    def run(self, **options: Any) -> dict[str, Any]:
        tool = Tool.objects.filter(id=self.parse_uuid(options["tool_id"], "tool")).first()
        if tool is None:
            raise OperatorError(f"No tool {options['tool_id']}.", "Check the tool id (createtool prints it).")
        credential = self.read_secret("credential")
        tool = tool_rotate_credential(tool=tool, actor=operator(), credential=credential)
        return {
            "tool_id": str(tool.id),
            "credential_rotated_at": tool.credential_rotated_at.isoformat()
            if tool.credential_rotated_at
            else None,
        }
