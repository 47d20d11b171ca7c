from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from accounts.management.commands._common import operator
from agentkey.core.cli import OperatorCommand, OperatorError
from catalog.models import ToolSuggestion
from catalog.services import tool_suggestion_dismiss


class Command(OperatorCommand):
    help = "Dismiss a pending tool suggestion; agents cannot re-suggest it for 24 hours."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("suggestion_id")
        parser.add_argument("--reason", default="")

    def run(self, **options: Any) -> dict[str, Any]:
        suggestion = ToolSuggestion.objects.filter(
            id=self.parse_uuid(options["suggestion_id"], "suggestion")
        ).first()
        if suggestion is None:
            raise OperatorError(f"No tool suggestion {options['suggestion_id']}.", "Check the suggestion id.")
        suggestion = tool_suggestion_dismiss(
            suggestion=suggestion, actor=operator(), reason=options["reason"]
        )
        return {
            "suggestion_id": str(suggestion.id),
            "status": suggestion.status,
            "dismissed_until": suggestion.dismissed_until.isoformat() if suggestion.dismissed_until else None,
        }
