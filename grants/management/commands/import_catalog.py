from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from accounts.management.commands._common import find_org, operator
from agentkey.core.cli import OperatorCommand, OperatorError
from agentkey.core.errors import ValidationFailed
from catalog.ascode import Plan, ToolSpec, catalog_plan, guess_format, parse_catalog, templates
from grants.catalog_import import catalog_import

INVALID = 2  # exit code for a file (or template list) that is refused


class Command(OperatorCommand):
    help = (
        "Create and update tools from a catalog file (YAML or JSON, as export_catalog writes it) or from "
        "built-in templates (--template github,linear). Tools are matched by config_key; tools not in "
        "the file are kept. --dry-run prints the differences and changes nothing. An invalid file is "
        "refused as a whole (exit code 2). Credentials are added afterwards (rotatetoolcredential)."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", required=True, help="Organization id or slug.")
        parser.add_argument("file", nargs="?", help="The catalog file (.yaml, .yml or .json).")
        parser.add_argument("--template", default="", help="Built-in templates, comma-separated.")
        parser.add_argument("--dry-run", action="store_true", help="Show the differences only.")

    def _specs(self, options: dict[str, Any]) -> list[ToolSpec]:
        if bool(options.get("file")) == bool(options["template"]):
            raise OperatorError(
                "Give a catalog file or --template, not both and not neither.",
                "For example: import_catalog --org acme catalog.yaml, or --template github,linear.",
                exit_code=INVALID,
            )
        if options["template"]:
            return templates([k.strip() for k in options["template"].split(",") if k.strip()])
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OperatorError(
                f"Cannot read {path}: {exc}.",
                "Pass the path of a UTF-8 YAML or JSON file.",
                exit_code=INVALID,
            ) from None
        return parse_catalog(text, guess_format(path.name, text))

    def run(self, **options: Any) -> dict[str, Any]:
        org = find_org(options["org"])
        try:
            specs = self._specs(options)
            if options["dry_run"]:
                plan = catalog_plan(org=org, specs=specs)
            else:
                plan = catalog_import(org=org, actor=operator(), specs=specs)
        except ValidationFailed as exc:
            raise OperatorError(exc.error, exc.hint, exit_code=INVALID) from None
        return self._report(plan, dry_run=options["dry_run"], as_json=bool(options.get("json")))

    @staticmethod
    def _report(plan: Plan, *, dry_run: bool, as_json: bool) -> dict[str, Any]:
        summary = plan.summary()
        if as_json:
            return {"dry_run": dry_run, **summary}
        changed = [f"{key} ({', '.join(fields)})" for key, fields in summary["changed"].items()]
        return {
            "dry_run": "yes: nothing was changed" if dry_run else "no",
            "created": ", ".join(summary["created"]) or "-",
            "changed": "; ".join(changed) or "-",
            "unchanged": ", ".join(summary["unchanged"]) or "-",
            "not in the file (kept)": ", ".join(summary["not_in_file"]) or "-",
        }
