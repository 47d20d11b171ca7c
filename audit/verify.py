"""Verifying the audit log in the database against its signatures and checkpoints."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from audit import signing
from audit.models import AuditCheckpoint, AuditEvent
from audit.sealing import checkpoint_fields
from audit.verifier import EVENT_FIELDS, Problem, Report, Verifier

CHUNK = 10_000

_PG_EVENTS = """
SELECT id, action, actor_id, actor_label, actor_type, agent_id::text,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
       host(ip), metadata::text, org_id::text, request_id, target_id, target_label,
       target_type, tool_id::text, signature
FROM audit_auditevent WHERE id >= %s ORDER BY id
"""


def _pg_rows(from_id: int) -> Iterator[Sequence[Any]]:
    loads, canonical_ip = json.loads, signing.canonical_ip
    # A server-side cursor: millions of rows stream in chunks, never all in memory.
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(_PG_EVENTS, [from_id])
        while chunk := cursor.fetchmany(CHUNK):
            for r in chunk:
                ip = r[7]
                if ip is not None and ":" in ip:
                    ip = canonical_ip(ip)
                yield (r[0], r[1], r[2], r[3], r[4], r[5], r[6], ip, loads(r[8]), *r[9:])


def _orm_rows(from_id: int) -> Iterator[Sequence[Any]]:
    columns = ("id", *EVENT_FIELDS, "signature")
    events = AuditEvent.objects.filter(id__gte=from_id).order_by("id").values_list(*columns)
    for row in events.iterator(chunk_size=CHUNK):
        values = dict(zip(columns, row, strict=True))
        for name in ("org_id", "agent_id", "tool_id"):
            values[name] = str(values[name]) if values[name] is not None else None
        values["created_at"] = signing.canonical_time(values["created_at"])
        values["ip"] = signing.canonical_ip(values["ip"])
        yield tuple(values[name] for name in columns)


def read_anchors(path: str) -> list[dict[str, Any]]:
    if not path or not Path(path).exists():
        return []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def audit_verify(
    *, org_id: uuid.UUID | None = None, since_checkpoint: int | None = None, anchor_file: str | None = None
) -> Report:
    """Every modified, deleted, out-of-band inserted or moved event; every broken or missing checkpoint."""
    keys = signing.get_audit_keys().keys
    checkpoints = AuditCheckpoint.objects.order_by("sequence")
    if since_checkpoint is not None:
        # The one before too, so the link into the first checked checkpoint is checked.
        checkpoints = checkpoints.filter(sequence__gte=since_checkpoint - 1)
    cps = [{**checkpoint_fields(cp), "signature": cp.signature} for cp in checkpoints]
    path = (
        anchor_file if anchor_file is not None else str(getattr(settings, "AGENTKEY_AUDIT_ANCHOR_FILE", ""))
    )
    from_start = since_checkpoint is None or since_checkpoint <= 1
    verifier = Verifier(keys=keys, checkpoints=cps, anchors=read_anchors(path), from_start=from_start)
    verifier.check_checkpoints()
    from_id = cps[0]["first_event_id"] if cps and not from_start else 1
    rows = _pg_rows(from_id) if connection.vendor == "postgresql" else _orm_rows(from_id)
    report = verifier.check_events(rows)
    if org_id is not None:
        # Event problems of other organizations are left out; deletions (whose organization
        # is gone with the row) and checkpoint problems concern everyone.
        wanted = str(org_id)
        kept = [p for p in report.problems if p.org_id in (None, wanted)]
        report.counts.clear()
        report.problems = []
        for problem in kept:
            report.add(problem)
    return report


__all__ = ["Problem", "Report", "audit_verify"]
