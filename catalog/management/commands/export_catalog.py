from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from accounts.management.commands._common import find_org
from agentkey.core.cli import OperatorCommand, OperatorError
from catalog.ascode import FORMATS, catalog_export, guess_format, render


class Command(OperatorCommand):
    help = (
        "Write an organization's tool catalog as YAML or JSON (catalog as code, keyed by config_key). "
        "Never secrets: no credential, secret id or credential date. Without --output the file goes to "
        "stdout (JSON with --json)."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", required=True, help="Organization id or slug.")
        parser.add_argument(
            "--format", choices=FORMATS, help="Default: from --output's extension, else yaml."
        )
        parser.add_argument("--output", help="Write to this file and print a summary.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("output"):
            super().handle(*args, **options)
            return
        # The document itself is the output: nothing else may be printed on stdout.
        try:
            org = find_org(options["org"])
        except OperatorError as exc:
            self._fail(exc.error, exc.hint, bool(options.get("json")))
        fmt = options.get("format") or ("json" if options.get("json") else "yaml")
        self.stdout.write(render(catalog_export(org), fmt), ending="")

    def run(self, **options: Any) -> dict[str, Any]:
        org = find_org(options["org"])
        output = Path(options["output"])
        fmt = options.get("format") or guess_format(output.name, "")
        document = catalog_export(org)
        try:
            output.write_text(render(document, fmt), encoding="utf-8")
        except OSError as exc:
            raise OperatorError(f"Cannot write {output}: {exc.strerror}.", "Check the path.") from None
        return {"output": str(output), "format": fmt, "tools": len(document["tools"])}
