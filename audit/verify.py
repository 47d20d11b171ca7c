"""Verifying the audit log in the database against its signatures and checkpoints.

On PostgreSQL the events stream out of ``COPY (SELECT ...) TO STDOUT`` as text lines, read
straight from libpq, and each line becomes the canonical bytes (audit.signing) by filling a
template: no ORM objects, no per-row dict, no JSON encoding of the plain columns. A row whose
template does not match its signature (tampered, or a text column the template cannot render as
the signer did) is rebuilt exactly by the general path, which decides. Large logs are split into id ranges verified by
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.db import connection, transaction
from psycopg import pq, sql

from audit import signing
from audit.models import AuditCheckpoint, AuditEvent
from audit.sealing import checkpoint_fields
from audit.verifier import (
    EVENT_DOMAIN,
    EVENT_FIELDS,
    MAX_LISTED,
    TAG_CHARS,
    Problem,
    Report,
    Verifier,
    _Sealed,
)

CHUNK = 10_000
# Below this many events one process does it all: starting workers costs more than it saves.
PARALLEL_MIN_EVENTS = 200_000
MAX_WORKERS = 8
_LAST_ID = 2**63 - 1
_META_CACHE = 50_000
# Distinct addresses remembered: rendering an IPv6 address (ipaddress) costs about 7 µs.
_IP_CACHE = 250_000

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
# The template: event_canonical() as one %-template, the ten text columns put in as COPY wrote
# them. For plain ASCII that is what the signer wrote; COPY's escapes \\ \b \f \n \r \t are also
# JSON's, with the same meaning. Anything else in a text column (non-ASCII, a control character,
# DEL, COPY's \v) makes bytes that event_canonical() never produces (its output is printable
# ASCII, valid JSON), so they cannot match a signature: such a row, legitimate or not, goes to
# the general path. Only a quote could move the boundaries between columns, so a row with one
# in its text columns skips the template. Hence: when the template matches the signature, each
# text column decodes to the signed value, and the row holds exactly the signed content.
_TEMPLATE = (
    b'{"action":"%s","actor_id":"%s","actor_label":"%s","actor_type":"%s","agent_id":%s,'
    b'"created_at":"%s","ip":%s,"metadata":%s,"org_id":%s,"request_id":"%s","target_id":"%s",'
    b'"target_label":"%s","target_type":"%s","tool_id":%s}'
)
# An id no event reaches: "no checkpoint left".
_PAST = 2**64
_COPY_ESCAPES = {b"\\": b"\\", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_COPY_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
# orjson's output of a value is the canonical metadata JSON (sort_keys, separators,
# ensure_ascii, allow_nan=False) byte for byte when it is ASCII without DEL and holds no number
# in exponent form or below 1e-4. orjson escapes '"', '\\' and control characters exactly as
# json.dumps does, but writes DEL and non-ASCII as they are; Python's repr writes "1e-05" where
# orjson writes "0.00001" or "1e-5", and integers past 64 bits come back from orjson as floats
# (so in exponent form). Exponents always carry a sign in both. Any other value takes the exact
# path; tests/audit/test_verify_fast_path.py checks the two against each other on random values.
_ORJSON_NUMBER_UNSURE = re.compile(rb"(?:^|[:,\[])-?(?:0\.0000|[0-9]+(?:\.[0-9]+)?[eE])").search


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


def _orjson_canonical(raw: bytes) -> bytes | None:
    """The canonical JSON of a COPY-written jsonb value through orjson (about a third of the
    standard library's time), or None where that is not sure to be the same bytes."""
    # (``.find``, not ``in``: on bytes, ``in`` first tries the operand as an integer and builds
    # and drops a TypeError, which costs more than the search.)
    if raw.find(b"\\") >= 0:  # COPY escaped something: the exact path unescapes it
        return None
    try:
        canonical = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # too deep, or a number out of range
        return None
    if not canonical.isascii() or canonical.find(b"\x7f") >= 0:
        return None
    # The regular expression (slow) only runs when one of these is there at all.
    if (
        canonical.find(b"e-") >= 0 or canonical.find(b"e+") >= 0 or canonical.find(b"0.0000") >= 0
    ) and _ORJSON_NUMBER_UNSURE(canonical):
        return None
    return canonical


def _keyed(key: bytes) -> tuple[Any, Any]:
    """The inner and outer SHA-256 states of HMAC-SHA256 (RFC 2104) keyed with ``key``, the inner
    one fed EVENT_DOMAIN: copying both per event gives ``hmac.digest(key, EVENT_DOMAIN + data,
    "sha256")`` with no per-call set-up.

    CPU per 400-byte event, base64 included (best of 7 runs of 50,000 events, Python 3.11, OpenSSL 3,
    quiet machine): ``hmac.digest()`` 2.6 µs (OpenSSL looks the digest up on every call);
    ``hmac.new(key, EVENT_DOMAIN, "sha256").copy()`` then update/digest 1.9 µs (Python methods
    around the C object); copying that C object itself (``._hmac``) 1.3 µs (it copies three
    digest contexts); these two states copied inline 1.15 µs.
    """
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + EVENT_DOMAIN)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


class _Rows:
    """Checks COPY lines of events against their signatures and the checkpoints (``check``)."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.states = {kid.encode(): _keyed(key) for kid, key in keys.items()}
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
        """The canonical JSON of a jsonb value (as COPY wrote it), remembered per distinct text."""
        canonical = _orjson_canonical(raw)
        if canonical is None:
            canonical = self.exact_metadata(raw)
        if len(self.meta) < _META_CACHE:
            # A copy: orjson's own bytes keep a much larger allocation behind them, and holding
            # thousands of those made each call cost several times as much (measured).
            self.meta[raw] = canonical = memoryview(canonical).tobytes()
        return canonical

    def exact_metadata(self, raw: bytes) -> bytes:
        """json.loads, then the canonical encoder: exactly the signer's bytes, slower."""
        text = (_copy_unescape(raw) if raw.find(b"\\") >= 0 else raw).decode("utf-8")
        value, end = self.scan(text, 0)
        if end != len(text):  # never for jsonb's own output; be exact anyway
            value = json.loads(text)
        return "".join(self.encode(value, 0)).encode("ascii")

    def _ip(self, raw: bytes) -> bytes:
        if not raw:
            token = b"null"
        elif raw.find(b":") >= 0:
            token = b'"%s"' % str(signing.canonical_ip(raw.decode("ascii"))).encode("ascii")
        else:
            token = b'"%s"' % raw
        if len(self.ips) < _IP_CACHE:
            self.ips[raw] = token
        return token

    def check(self, verifier: Verifier, lines: Iterable[bytes]) -> Report:  # noqa: PLR0912, PLR0915
        """``verifier.check_signed`` over COPY lines, each rendered and MAC-checked on the way.

        The same walk and the same problems in the same order as check_signed (whose per-row
        bookkeeping this repeats, in one loop without a tuple per event in between); a checkpoint
        that is not clean in bulk is handed to the verifier's own ``_Sealed`` to name its problems.
        """
        states, template, b64, same = self.states, _TEMPLATE, binascii.b2a_base64, hmac.compare_digest
        meta_of, ip_of, metas, ips = self._meta, self._ip, self.meta.get, self.ips.get
        report, add, seen = verifier.report, verifier.report.add, verifier.seen
        remember = seen.add
        all_cps = verifier.cps
        cps = iter(all_cps)
        cp = next(cps, None)
        first, last = (cp["first_event_id"], cp["last_event_id"]) if cp is not None else (_PAST, _PAST)
        rows: list[_Row] = []
        pending = rows.append
        unsealed = sealed = 0
        for line in lines:
            # COPY's text format: 16 columns, 15 tabs (a tab inside a value is written as "\t").
            (
                number,
                signature,
                action,
                actor_id,
                actor_label,
                actor_type,
                request_id,
                target_id,
                target_label,
                target_type,
                rest,
            ) = line.split(b"\t", _TEXT_COLUMNS)
            ok = False
            # See "The template" above: without a quote in the text columns, a template that
            # matches the signature proves the row holds the signed content.
            if line.find(b'"', 0, len(line) - len(rest)) < 0:
                agent, created, ip, org, tool, meta = rest.split(b"\t")
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
                event_id = int(number)
                kid, _sep, mac = signature.partition(b":")
                state = states.get(kid)
                if state is not None:
                    inner, outer = state[0].copy(), state[1].copy()
                    inner.update(canonical)
                    outer.update(inner.digest())
                    ok = same(b64(outer.digest(), newline=False), mac)
            if not ok:  # as the signer builds it; a tampered row or an unusual text column
                event_id, text_signature, canonical = _general_canonical(line)
                signature = text_signature.encode("utf-8")
                kid, _sep, mac = signature.partition(b":")
                state = states.get(kid)
                if state is not None:
                    inner, outer = state[0].copy(), state[1].copy()
                    inner.update(canonical)
                    outer.update(inner.digest())
                    ok = same(b64(outer.digest(), newline=False), mac)
            if mac:
                marker = hash(mac)
                if marker in seen:
                    add(Problem("duplicated", "copy of an earlier event's signed content", event_id))
                remember(marker)
            if state is None:
                add(
                    Problem(
                        "unsigned" if not signature else "unknown_key",
                        "event has no signature"
                        if not signature
                        else f"unknown key id {kid.decode('utf-8')!r}",
                        event_id=event_id,
                    )
                )
            if event_id > last:
                while cp is not None and event_id > last:
                    sealed += _close(cp, rows, all_cps, report)
                    cp = next(cps, None)
                    rows = []
                    pending = rows.append
                    first, last = (
                        (cp["first_event_id"], cp["last_event_id"]) if cp is not None else (_PAST, _PAST)
                    )
            if event_id < first:
                unsealed += 1
                if state is not None and not ok:
                    add(
                        Problem(
                            "invalid_signature",
                            "unsealed event fails its signature: edited or forged",
                            event_id,
                        )
                    )
                continue
            pending((event_id, signature, mac, ok))
        while cp is not None:
            sealed += _close(cp, rows, all_cps, report)
            cp = next(cps, None)
            rows = []
        report.unsealed_events += unsealed
        report.events += sealed + unsealed
        report.sealed_events += sealed
        return report


# (id, signature, its MAC part, MAC valid under a loaded key) of one sealed event, as bytes.
_Row = tuple[int, bytes, bytes, bool]


def _close(cp: dict[str, Any], rows: list[_Row], all_cps: Sequence[dict[str, Any]], report: Report) -> int:
    """A checkpoint's rows: nothing to report when they are what it sealed (as _Sealed._clean
    decides), else the verifier's own walk names every problem. Returns how many rows it had."""
    if len(rows) == cp["event_count"] and all([row[3] for row in rows]):  # noqa: C419  (a list is faster)
        tags = b"".join([row[2][:TAG_CHARS] for row in rows])
        if tags == cp["tags"].encode("utf-8"):
            lines = b"".join([b"%d:%s\n" % row[:2] for row in rows])
            if hashlib.sha256(lines).hexdigest() == cp["events_digest"]:
                return len(rows)
    state = _Sealed(cp, all_cps)
    for event_id, signature, mac, ok in rows:
        text_mac = mac.decode("utf-8")
        state.rows.append((event_id, signature.decode("utf-8"), text_mac[:TAG_CHARS], ok, None))
    state.close(report)
    return len(rows)


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


class AnchorFileError(Exception):
    """The anchor file is configured but cannot be read; the message says why."""


def read_anchors(path: str) -> list[dict[str, Any]]:
    """The checkpoint copies in an anchor file (one JSON object per line); none without a path."""
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AnchorFileError("it does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorFileError(getattr(exc, "strerror", None) or type(exc).__name__) from None
    anchors = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            anchor = json.loads(line)
        except ValueError:
            anchor = None
        if (
            not isinstance(anchor, dict)
            or not isinstance(anchor.get("sequence"), int)
            or "hash" not in anchor
        ):
            raise AnchorFileError(f"line {number} is not an anchor line")
        anchors.append(anchor)
    return anchors


def _anchors(path: str) -> tuple[list[dict[str, Any]], Problem | None]:
    """The anchors, or none and the problem to report when the configured file cannot be read.

    A missing file is fine only while nothing is sealed: the seal job writes the first line with
    the first checkpoint. Otherwise verifying without it would silently skip the one check that
    catches a cut-off tail (newest checkpoints deleted with their events).
    """
    try:
        return read_anchors(path), None
    except AnchorFileError as exc:
        if not Path(path).exists() and not AuditCheckpoint.objects.exists():
            return [], None
        detail = (
            f"anchor file {path} cannot be read: {exc}. Restore it from its copy (or point "
            "--anchor-file / AGENTKEY_AUDIT_ANCHOR_FILE at it); an empty setting verifies without anchors."
        )
        return [], Problem("anchor_unreadable", detail)


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
        anchor_file
        if anchor_file is not None
        else str(getattr(settings, "AGENTKEY_AUDIT_ANCHOR_FILE", "") or "")
    )
    anchors, unreadable = _anchors(path)
    from_start = since_checkpoint is None or since_checkpoint <= 1
    verifier = Verifier(keys=keys, checkpoints=cps, anchors=anchors, from_start=from_start)
    if unreadable is not None:
        verifier.report.add(unreadable)
    verifier.check_checkpoints()
    from_id = cps[0]["first_event_id"] if cps and not from_start else 1
    if connection.vendor != "postgresql":
        return verifier.check_events(_orm_rows(from_id))
    segments = _segments(verifier.cps, from_id, _worker_count(workers, from_id))
    if len(segments) == 1:
        lines = _copy_lines(connection.connection, from_id, _LAST_ID)
        with _collector_paused():
            return _Rows(keys).check(verifier, lines)
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
        lines = _copy_lines(raw, task.segment.lo, task.segment.hi)
        with _collector_paused():
            report = _Rows(task.keys).check(verifier, lines)
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
        marker = hash(signature.partition(":")[2].encode("utf-8"))  # as the walk hashes it (bytes)
        if marker in markers:
            markers.discard(marker)
            report.add(Problem("duplicated", "copy of an earlier event's signed content", event_id))
            if not markers:
                return


__all__ = ["Problem", "Report", "audit_verify"]
