"""Sealing audit events into chained, signed checkpoints (docs/audit-verification.md).

Writers commit out of id order: id 41 may commit after id 42, and a rolled-back
transaction leaves a hole forever. A checkpoint therefore covers ids only up to a
*safe horizon*, below which no transaction can still add a row:

1. read the sequence's last allocated value ``L`` — every id <= L is already taken;
2. wait ``AGENTKEY_AUDIT_SEAL_GRACE`` seconds, so that a transaction that drew its id
   from the sequence has also been given its transaction id (both happen inside one
   INSERT statement, microseconds apart);
3. list this database's transactions that hold a transaction id (pg_stat_activity) and wait
   until each of them has ended.

After that, each id <= L is either committed (its row is visible) or will never be:
holes are recorded in the checkpoint as ``missing_ids`` and are not alarms. If step 3
does not finish within ``AGENTKEY_AUDIT_SEAL_WAIT`` seconds (a long transaction), the run
seals nothing and the next one tries again. Nothing here touches the vend path: writers
never wait for the sealer, and the sealer holds only its own advisory lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from agentkey.core import http
from audit import signing, verifier
from audit.models import AuditCheckpoint, AuditEvent

logger = logging.getLogger(__name__)

_SEAL_LOCK = 0x4155444954  # "AUDIT": one sealer at a time, across processes
DEFAULT_MAX_EVENTS = 10_000


def _safe_horizon() -> int:
    """The highest event id below which the set of committed events can no longer change."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            # SQLite has one writer at a time and hands out ids at insert: every id up to
            # the largest committed one is final.
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM audit_auditevent")
            return int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('audit_auditevent', 'id')), 0)"
        )
        allocated = int(cursor.fetchone()[0])
        time.sleep(float(getattr(settings, "AGENTKEY_AUDIT_SEAL_GRACE", 1.0)))
        # Transactions of this database that hold a transaction id now; ours is not one to wait for.
        # (Snapshots span the whole cluster: other databases' transactions must not hold us up.)
        in_progress = (
            "SELECT pid, backend_xid::text FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
        )
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(in_progress)
        waiting = set(cursor.fetchall())
        deadline = time.monotonic() + float(getattr(settings, "AGENTKEY_AUDIT_SEAL_WAIT", 10.0))
        while waiting:
            if time.monotonic() > deadline:
                logger.warning("audit sealing postponed: a transaction older than the horizon is still open")
                return 0
            time.sleep(0.05)
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(in_progress)
            waiting &= set(cursor.fetchall())
        return allocated


def checkpoint_fields(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {
        "created_at": signing.canonical_time(checkpoint.created_at),
        "event_count": checkpoint.event_count,
        "events_digest": checkpoint.events_digest,
        "first_event_id": checkpoint.first_event_id,
        "last_event_id": checkpoint.last_event_id,
        "missing_ids": list(checkpoint.missing_ids),
        "prev_hash": checkpoint.prev_hash,
        "sequence": checkpoint.sequence,
        "tags": checkpoint.tags,
    }


def checkpoint_record(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """The checkpoint as exported and anchored: its fields, signature and hash."""
    fields = checkpoint_fields(checkpoint)
    return {
        "type": "checkpoint",
        **fields,
        "signature": checkpoint.signature,
        "hash": signing.checkpoint_hash(fields, checkpoint.signature),
    }


def _seal_one(horizon: int, max_events: int) -> AuditCheckpoint | None:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEAL_LOCK])
        last = AuditCheckpoint.objects.order_by("-sequence").first()
        start = last.last_event_id + 1 if last else 1
        if start > horizon:
            return None
        # Skip a run of rolled-back ids rather than seal a checkpoint made of holes.
        next_id = (
            AuditEvent.objects.filter(id__gte=start, id__lte=horizon)
            .order_by("id")
            .values_list("id", flat=True)
            .first()
        )
        if next_id is None:
            return None
        # The chain starts at the first event there is; later ranges follow on without a break.
        first_id = start if last else next_id
        last_id = min(horizon, next_id + max_events - 1)
        rows = list(
            AuditEvent.objects.filter(id__gte=first_id, id__lte=last_id)
            .order_by("id")
            .values_list("id", "signature")
        )
        digest = hashlib.sha256()
        present = set()
        tags = []
        for event_id, signature in rows:
            digest.update(signing.digest_line(event_id, signature))
            tags.append(signing.signature_tag(signature))
            present.add(event_id)
        checkpoint = AuditCheckpoint(
            sequence=(last.sequence + 1) if last else 1,
            first_event_id=first_id,
            last_event_id=last_id,
            event_count=len(rows),
            missing_ids=[i for i in range(first_id, last_id + 1) if i not in present],
            tags="".join(tags),
            events_digest=digest.hexdigest(),
            prev_hash=signing.checkpoint_hash(checkpoint_fields(last), last.signature)
            if last
            else verifier.GENESIS_HASH,
        )
        checkpoint.signature = signing.sign_checkpoint(checkpoint_fields(checkpoint))
        checkpoint.save(force_insert=True)
        record = checkpoint_record(checkpoint)
        transaction.on_commit(lambda: publish_anchor(record))
        return checkpoint


def seal_checkpoints(*, max_events: int = DEFAULT_MAX_EVENTS) -> list[AuditCheckpoint]:
    """Seal every event up to the safe horizon into as many checkpoints as it takes."""
    horizon = _safe_horizon()
    sealed: list[AuditCheckpoint] = []
    while (checkpoint := _seal_one(horizon, max_events)) is not None:
        sealed.append(checkpoint)
    return sealed


def publish_anchor(record: dict[str, Any]) -> None:
    """Copy a checkpoint outside the database, where whoever edits the database cannot reach.

    Best effort: a failed publication is logged; the next checkpoint's line still chains
    to this one, so a later comparison shows any gap.
    """
    anchor = {k: record[k] for k in ("sequence", "last_event_id", "created_at", "hash")}
    line = json.dumps(anchor, sort_keys=True, separators=(",", ":")) + "\n"
    path = str(getattr(settings, "AGENTKEY_AUDIT_ANCHOR_FILE", "") or "")
    if path:
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError as exc:
            logger.error("audit anchor file %s could not be written: %s", path, exc.strerror)
    url = str(getattr(settings, "AGENTKEY_AUDIT_ANCHOR_URL", "") or "")
    if url:
        try:
            http.request(
                "POST",
                url,
                headers={"content-type": "application/json"},
                body=line.encode(),
                timeout=10.0,
            )
        except (http.FetchFailed, http.UnsafeURL) as exc:
            logger.error("audit anchor webhook failed: %s", exc)
