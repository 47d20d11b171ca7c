from __future__ import annotations

import json
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from agentkey.core.cli import OperatorCommand, OperatorError
from audit.signing import AuditKeyError
from audit.verify import audit_verify


class Command(OperatorCommand):
    help = (
        "Check every audit event against its signature and the chained checkpoints. "
        "Exits 1 when anything was modified, deleted, inserted, moved or unsealed."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", default=None, help="Only report this organization's events.")
        parser.add_argument("--since-checkpoint", type=int, default=None, help="Start at checkpoint N.")
        parser.add_argument(
            "--anchor-file",
            default=None,
            help="Anchor copies to compare (default AGENTKEY_AUDIT_ANCHOR_FILE).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="Processes verifying id ranges side by side (default: one per CPU for large logs).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = bool(options.get("json"))
        try:
            if options["workers"] is not None and options["workers"] < 1:
                raise OperatorError(
                    "--workers must be at least 1.", "Leave it out to pick one per CPU.", exit_code=2
                )
            org_id = self.parse_uuid(options["org"], "organization") if options["org"] else None
            started = time.monotonic()
            report = audit_verify(
                org_id=org_id,
                since_checkpoint=options["since_checkpoint"],
                anchor_file=options["anchor_file"],
                workers=options["workers"],
            )
            seconds = time.monotonic() - started
        except OperatorError as exc:
            self._fail(exc.error, exc.hint, as_json, exc.exit_code)
            return
        except AuditKeyError as exc:
            self._fail(str(exc), "Set AGENTKEY_AUDIT_KEY (or AGENTKEY_AUDIT_KEY_FILE).", as_json)
            return
        summary = {
            "ok": report.ok,
            "events": report.events,
            "sealed_events": report.sealed_events,
            "unsealed_events": report.unsealed_events,
            "checkpoints": report.checkpoints,
            "seconds": round(seconds, 3),
            "events_per_second": int(report.events / seconds) if seconds > 0 else None,
            "problem_counts": dict(sorted(report.counts.items())),
        }
        if as_json:
            self.stdout.write(json.dumps({**summary, "problems": [p.as_dict() for p in report.problems]}))
        else:
            for key, value in summary.items():
                self.stdout.write(f"{key}: {value}")
            for problem in report.problems:
                where = f"event {problem.event_id}" if problem.event_id is not None else ""
                where += f" checkpoint {problem.checkpoint}" if problem.checkpoint is not None else ""
                place = f" {where.strip()}:" if where.strip() else ""
                self.stdout.write(f"PROBLEM {problem.kind}:{place} {problem.detail}")
        if not report.ok:
            if as_json:
                raise SystemExit(1)
            raise CommandError(f"audit log verification failed: {sum(report.counts.values())} problem(s)")
