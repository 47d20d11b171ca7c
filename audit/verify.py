"""Verifying the audit log in the database against its signatures and checkpoints.

On PostgreSQL the events stream out of ``COPY (SELECT ...) TO STDOUT`` as text lines, read
straight from libpq, and each line becomes the canonical bytes (audit.signing) by filling a
template: no ORM objects, no per-row dict, no JSON encoding of the plain columns. Only rows the
template cannot render byte for byte (a quote, backslash, control or non-ASCII character in a
text column) go through the general path. Large logs are split into id ranges verified by
worker processes (``workers``) that share one snapshot. See docs/audit-verification.md,
"Performance".
"""

from __future__ import annotations

import binascii
import contextlib
import gc
import hashlib
import hmac
import itertools
import json
import json.encoder
import json.scanner
import multiprocessing
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from psycopg import pq, sql

from audit import signing
from audit.models import AuditCheckpoint, AuditEvent
from audit.sealing import checkpoint_fields
from audit.verifier import EVENT_DOMAIN, EVENT_FIELDS, MAX_LISTED, Problem, Report, Verifier

CHUNK = 10_000
# Below this many events one process does it all: starting workers costs more than it saves.
PARALLEL_MIN_EVENTS = 200_000
MAX_WORKERS = 8
_LAST_ID = 2**63 - 1
_META_CACHE = 50_000

# The ten columns that may hold any text first (id, signature, then plain text columns), then
# columns PostgreSQL renders as ready JSON tokens (uuid or null), the time, the address and the
# metadata (whose text may hold anything, so it comes last).
_COPY_EVENTS = """
COPY (
  SELECT id, signature, action, actor_id, actor_label, actor_type, request_id, target_id,
         target_label, target_type, coalesce('"' || agent_id::text || '"', 'null'),
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
         coalesce(host(ip), ''), coalesce('"' || org_id::text || '"', 'null'),
         coalesce('"' || tool_id::text || '"', 'null'), metadata
  FROM audit_auditevent WHERE id >= {lo} AND id <= {hi} ORDER BY id
) TO STDOUT
"""
_TEXT_COLUMNS = 10
# event_canonical() of a row whose text columns need no JSON escaping, as one %-template.
_TEMPLATE = (
    b'{"action":"%s","actor_id":"%s","actor_label":"%s","actor_type":"%s","agent_id":%s,'
    b'"created_at":"%s","ip":%s,"metadata":%s,"org_id":%s,"request_id":"%s","target_id":"%s",'
    b'"target_label":"%s","target_type":"%s","tool_id":%s}'
)
# Anything json.dumps(ensure_ascii=True) would escape, or that COPY escaped (backslash).
_NOT_PLAIN = re.compile(rb"[^\t\x20\x21\x23-\x5b\x5d-\x7e]").search
_COPY_ESCAPES = {b"\\": b"\\", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_COPY_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)

SignedRow = tuple[int, str, str | None, bool]


def _copy_unescape(raw: bytes) -> bytes:
    # COPY's text format escapes only these on output (no octal or hex forms).
    return _COPY_ESCAPE.sub(lambda m: _COPY_ESCAPES.get(m.group(1), m.group(1)), raw)


def _copy_text(raw: bytes) -> str | None:
    if raw == b"\\N":
        return None
    return (_copy_unescape(raw) if b"\\" in raw else raw).decode("utf-8")


def _general_canonical(line: bytes) -> tuple[int, str, bytes]:
    """The canonical bytes exactly as the signer builds them, for a row the template cannot render."""
    raw = line.split(b"\t")
    text = [_copy_text(f) for f in raw]
    (event_id, signature, action, actor_id, actor_label, actor_type, request_id, target_id, target_label,
     target_type, agent, created, ip, org, tool, metadata) = text  # fmt: skip
    values: dict[str, Any] = {
        "action": action,
        "actor_id": actor_id,
        "actor_label": actor_label,
        "actor_type": actor_type,
        "agent_id": json.loads(agent) if agent else None,
        "created_at": created,
        "ip": signing.canonical_ip(ip) if ip and ":" in ip else ip or None,
        "metadata": json.loads(metadata) if metadata is not None else None,
        "org_id": json.loads(org) if org else None,
        "request_id": request_id,
        "target_id": target_id,
        "target_label": target_label,
        "target_type": target_type,
        "tool_id": json.loads(tool) if tool else None,
    }
    return int(event_id or 0), signature or "", signing.event_canonical(values)


class _Mac:
    """HMAC-SHA256 (RFC 2104) of EVENT_DOMAIN + data, keyed once: hmac.digest(key, EVENT_DOMAIN + data,
    "sha256") looks the digest up in OpenSSL on every call, which costs more than hashing a row."""

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256(key).digest() if len(key) > 64 else key
        block = block.ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + EVENT_DOMAIN)
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def b64(self, data: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(data)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return binascii.b2a_base64(outer.digest(), newline=False)


class _Rows:
    """Turns COPY lines into (id, signature, org_id, mac_ok); org_id is filled in later for problems."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = {kid.encode(): _Mac(key) for kid, key in keys.items()}
        self.meta: dict[bytes, bytes] = {}
        self.ips: dict[bytes, bytes] = {}
        # json.loads + JSONEncoder(sort_keys, separators, ensure_ascii, allow_nan=False).encode,
        # minus their Python layers: the same C scanner and C encoder, so the same bytes.
        self.scan = json.scanner.c_make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]
        ascii_string = json.encoder.c_encode_basestring_ascii  # type: ignore[attr-defined]
        self.encode = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, None, ascii_string, None, ":", ",", True, False, False
        )

    def _meta(self, raw: bytes) -> bytes:
        canonical = self.meta.get(raw)
        if canonical is None:
            text = (_copy_unescape(raw) if b"\\" in raw else raw).decode("utf-8")
            value, end = self.scan(text, 0)
            if end != len(text):  # never for jsonb's own output; be exact anyway
                value = json.loads(text)
            canonical = "".join(self.encode(value, 0)).encode("ascii")
            if len(self.meta) < _META_CACHE:
                self.meta[raw] = canonical
        return canonical

    def _ip(self, raw: bytes) -> bytes:
        token = self.ips.get(raw)
        if token is None:
            if not raw:
                token = b"null"
            elif b":" in raw:
                token = json.dumps(signing.canonical_ip(raw.decode("ascii"))).encode("ascii")
            else:
                token = b'"%s"' % raw
            if len(self.ips) < _META_CACHE:
                self.ips[raw] = token
        return token

    def lines(self, lines: Iterator[bytes]) -> Iterator[SignedRow]:
        keys, template, meta_of, ip_of = self.keys, _TEMPLATE, self._meta, self._ip
        metas, ips = self.meta.get, self.ips.get
        not_plain, same, text_columns = _NOT_PLAIN, hmac.compare_digest, _TEXT_COLUMNS
        for line in lines:
            fields = line.split(b"\t", text_columns)
            rest = fields.pop()
            tokens = rest.split(b"\t")
            if len(tokens) == 6 and not_plain(line, 0, len(line) - len(rest)) is None:
                (
                    event_id,
                    signature,
                    action,
                    actor_id,
                    actor_label,
                    actor_type,
                    request_id,
                    target_id,
                    target_label,
                    target_type,
                ) = fields
                agent, created, ip, org, tool, meta = tokens
                canonical = template % (
                    action,
                    actor_id,
                    actor_label,
                    actor_type,
                    agent,
                    created,
                    ips(ip) or ip_of(ip),
                    metas(meta) or meta_of(meta),
                    org,
                    request_id,
                    target_id,
                    target_label,
                    target_type,
                    tool,
                )
                kid, _sep, mac = signature.partition(b":")
                key = keys.get(kid)
                ok = key is not None and same(key.b64(canonical), mac)
                yield int(event_id), signature.decode("ascii"), None, ok
            else:
                number, text_signature, exact = _general_canonical(line)
                text_kid, _colon, text_mac = text_signature.partition(":")
                text_key = keys.get(text_kid.encode())
                ok = text_key is not None and same(text_key.b64(exact), text_mac.encode())
                yield number, text_signature, None, ok


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The walk allocates millions of short-lived, acyclic objects (rows, parsed metadata); the
    cyclic garbage collector would re-scan every live object of the process over and over while
    they come and go, which cost about 40 % of the time. Reference counting frees them all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _copy_lines(raw: psycopg.Connection[Any], lo: int, hi: int) -> Iterator[bytes]:
    """Each event row of ids lo..hi as a COPY text line (no newline), in id order."""
    query = sql.SQL(_COPY_EVENTS).format(lo=sql.Literal(lo), hi=sql.Literal(hi))
    with raw.cursor() as cursor, cursor.copy(query) as copy:
        pgconn = raw.pgconn
        get = pgconn.get_copy_data
        # libpq hands over one row per call; asking it directly (without waiting when data is
        # buffered) costs a third of going through psycopg's generator for every row.
        while True:
            size, data = get(1)
            if size > 0:
                yield bytes(data)[:-1]
                continue
            if size == 0:  # nothing buffered: let psycopg wait for the socket
                block = copy.read()
                if not block:
                    return
                yield bytes(block)[:-1]
                continue
            # End of the data: collect the COPY's own result, as psycopg would have.
            while (result := pgconn.get_result()) is not None:
                if result.status != pq.ExecStatus.COMMAND_OK:
                    message = (result.error_message or b"").decode("utf-8", "replace")
                    raise RuntimeError(f"reading the audit log failed: {message}")
            return


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


def _fill_orgs(report: Report) -> None:
    """The organization of each listed event problem whose row is still there (a deleted one has none)."""
    wanted = {p.event_id for p in report.problems if p.event_id is not None and p.org_id is None}
    if not wanted:
        return
    orgs = dict(AuditEvent.objects.filter(id__in=wanted, org_id__isnull=False).values_list("id", "org_id"))
    for problem in report.problems:
        if problem.org_id is None and problem.event_id in orgs and problem.kind != "deleted":
            problem.org_id = str(orgs[problem.event_id])


def audit_verify(
    *,
    org_id: uuid.UUID | None = None,
    since_checkpoint: int | None = None,
    anchor_file: str | None = None,
    workers: int | None = None,
) -> Report:
    """Every modified, deleted, out-of-band inserted or moved event; every broken or missing checkpoint.

    ``workers``: processes verifying id ranges side by side (PostgreSQL only); by default one
    per CPU once the log passes PARALLEL_MIN_EVENTS events.
    """
    postgres = connection.vendor == "postgresql"
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if postgres and outermost:
            with connection.cursor() as cursor:
                # Checkpoints and events from one snapshot, even across several COPY statements.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        report = _verify(
            since_checkpoint=since_checkpoint,
            anchor_file=anchor_file,
            # Workers import the snapshot, which holds no uncommitted rows of an enclosing transaction.
            workers=workers if outermost else 1,
        )
        _fill_orgs(report)
    if org_id is not None:
        # Event problems of other organizations are left out; deletions (whose organization
        # is gone with the row) and checkpoint problems concern everyone.
        # Organizations are known only for the listed problems: when the list was cut at
        # MAX_LISTED, the counts stay those of the whole log (fail closed, never a false "ok").
        wanted = str(org_id)
        truncated = sum(report.counts.values()) > len(report.problems)
        report.problems = [p for p in report.problems if p.org_id in (None, wanted)]
        if not truncated:
            report.counts = Counter(p.kind for p in report.problems)
    return report


def _verify(*, since_checkpoint: int | None, anchor_file: str | None, workers: int | None) -> Report:
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
    if connection.vendor != "postgresql":
        return verifier.check_events(_orm_rows(from_id))
    segments = _segments(verifier.cps, from_id, _worker_count(workers, from_id))
    if len(segments) == 1:
        rows = _Rows(keys).lines(_copy_lines(connection.connection, from_id, _LAST_ID))
        with _collector_paused():
            return verifier.check_signed(rows)
    return _verify_parallel(verifier, keys, segments)


def _worker_count(workers: int | None, from_id: int) -> int:
    if workers is not None:
        return max(1, workers)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM audit_auditevent")
        newest = int(cursor.fetchone()[0])
    if newest - from_id + 1 < PARALLEL_MIN_EVENTS:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, MAX_WORKERS)


@dataclass(frozen=True)
class _Segment:
    lo: int
    hi: int
    checkpoints: list[dict[str, Any]]


def _segments(cps: list[dict[str, Any]], from_id: int, count: int) -> list[_Segment]:
    """Id ranges made of whole checkpoints, about as many events each; the last takes the unsealed tail.

    Only for a chain of contiguous checkpoints (the usual case); a broken chain is walked in one piece.
    """
    contiguous = all(b["first_event_id"] == a["last_event_id"] + 1 for a, b in itertools.pairwise(cps))
    if count < 2 or len(cps) < 2 or not contiguous or from_id > cps[0]["first_event_id"]:
        return [_Segment(from_id, _LAST_ID, cps)]
    total = sum(cp["event_count"] for cp in cps)
    groups: list[list[dict[str, Any]]] = [[]]
    done = 0
    for cp in cps:
        if groups[-1] and done >= total * len(groups) / count and len(groups) < count:
            groups.append([])
        groups[-1].append(cp)
        done += cp["event_count"]
    segments, lo = [], from_id
    for group in groups:
        segments.append(_Segment(lo, group[-1]["last_event_id"], group))
        lo = group[-1]["last_event_id"] + 1
    segments[-1] = _Segment(segments[-1].lo, _LAST_ID, segments[-1].checkpoints)
    return segments


@dataclass(frozen=True)
class _Task:
    params: dict[str, Any]
    snapshot: str
    keys: dict[str, bytes]
    segment: _Segment


def _verify_segment(task: _Task) -> tuple[Report, set[int]]:
    """In a worker process: one id range, in the parent's snapshot, on a connection of its own."""
    with psycopg.connect(**task.params) as raw:
        raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        raw.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(task.snapshot)))
        verifier = Verifier(keys=task.keys, checkpoints=task.segment.checkpoints)
        rows = _Rows(task.keys).lines(_copy_lines(raw, task.segment.lo, task.segment.hi))
        with _collector_paused():
            report = verifier.check_signed(rows)
        raw.rollback()
    return report, verifier.seen


def _verify_parallel(verifier: Verifier, keys: dict[str, bytes], segments: list[_Segment]) -> Report:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = str(cursor.fetchone()[0])
    # Where and as whom to connect; not Django's adapters (the workers read text only).
    params = {k: v for k, v in connection.get_connection_params().items() if isinstance(v, str | int)}
    tasks = [_Task(params, snapshot, keys, segment) for segment in segments]
    # fork: the workers need no Django set-up, and share the str hash seed, so the MAC hashes
    # they return compare across processes. They never touch the parent's connection.
    with multiprocessing.get_context("fork").Pool(len(tasks)) as pool:
        parts = pool.map(_verify_segment, tasks, chunksize=1)
    report = verifier.report
    earlier: set[int] = set()
    for segment, (part, seen) in zip(segments, parts, strict=True):
        report.events += part.events
        report.sealed_events += part.sealed_events
        report.unsealed_events += part.unsealed_events
        report.counts.update(part.counts)
        report.problems.extend(part.problems[: max(0, MAX_LISTED - len(report.problems))])
        if not earlier.isdisjoint(seen):
            _cross_duplicates(report, segment, earlier & seen)
        earlier |= seen
    return report


def _cross_duplicates(report: Report, segment: _Segment, markers: set[int]) -> None:
    """The first event of a range whose MAC an earlier range holds (its worker could not know)."""
    events = AuditEvent.objects.filter(id__gte=segment.lo, id__lte=segment.hi).order_by("id")
    for event_id, signature in events.values_list("id", "signature").iterator(chunk_size=CHUNK):
        marker = hash(signature.partition(":")[2])
        if marker in markers:
            markers.discard(marker)
            report.add(Problem("duplicated", "copy of an earlier event's signed content", event_id))
            if not markers:
                return


__all__ = ["Problem", "Report", "audit_verify"]
