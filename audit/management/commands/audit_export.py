from __future__ import annotations

import csv
import json
from argparse import ArgumentParser
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware

from agentkey.core.cli import OperatorCommand, OperatorError
from audit.models import AuditCheckpoint, AuditEvent
from audit.sealing import checkpoint_record

FIELDS = [
    "id",
    "created_at",
    "org_id",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "agent_id",
    "tool_id",
    "metadata",
    "ip",
    "request_id",
    "signature",
]


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            parsed = datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None
    except ValueError:
        # Well-formed but impossible (2026-02-30, hour 25): Django raises instead of returning None.
        parsed = None
    if parsed is None:
        raise OperatorError(f"--since {value!r} is not a date.", "Use 2026-01-31 or 2026-01-31T12:00:00Z.")
    return make_aware(parsed) if is_naive(parsed) else parsed


class Command(OperatorCommand):
    help = (
        "Stream audit events, oldest first, as JSONL (default) or CSV to stdout. "
        "An unfiltered JSONL export ends with the signed checkpoints."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--since", default=None, help="Only events at or after this date/time.")
        parser.add_argument("--org", default=None, help="Only this organization id.")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")

    def run(self, **options: Any) -> dict[str, Any]:
        events = AuditEvent.objects.order_by("id")
        since = _since(options["since"])
        if since is not None:
            events = events.filter(created_at__gte=since)
        if options["org"]:
            events = events.filter(org_id=self.parse_uuid(options["org"], "organization"))
        # self.stdout, not sys.stdout: call_command(stdout=...) and the dashboard export redirect it.
        out = self.stdout
        writer = csv.writer(out) if options["format"] == "csv" else None
        if writer is not None:
            writer.writerow(FIELDS)
        count = 0
        for row in events.values_list(*FIELDS).iterator(chunk_size=2000):
            record = dict(zip(FIELDS, row, strict=True))
            record["created_at"] = record["created_at"].isoformat()
            for name in ("org_id", "agent_id", "tool_id"):
                record[name] = str(record[name]) if record[name] else None
            if writer is not None:
                record["metadata"] = json.dumps(record["metadata"], sort_keys=True)
                writer.writerow([record[f] for f in FIELDS])
            else:
                out.write(json.dumps(record, sort_keys=True) + "\n")
            count += 1
        if writer is None and since is None and not options["org"]:
            # The whole log: its checkpoints travel with it, so a third party can verify the
            # chain and every sealed id offline (bin/verify-audit-export).
            for checkpoint in AuditCheckpoint.objects.order_by("sequence").iterator(chunk_size=100):
                out.write(json.dumps(checkpoint_record(checkpoint), sort_keys=True) + "\n")
        self.stderr.write(f"exported {count} events")
        return {}

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self.run(**options)
        except OperatorError as exc:
            self._fail(exc.error, exc.hint, bool(options.get("json")))
