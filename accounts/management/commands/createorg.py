from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from accounts.management.commands._common import operator
from accounts.services import org_create
from agentkey.core.cli import OperatorCommand


class Command(OperatorCommand):
    help = "Create an organization; prints its id and slug."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")

    def run(self, **options: Any) -> dict[str, Any]:
        org = org_create(name=options["name"], actor=operator())
        return {"org_id": str(org.id), "slug": org.slug, "name": org.name}
