"""audit_verify's fast path (COPY + template + parallel id ranges) against the signer and a tamperer.

The existing tamper tests (test_tamper_evidence.py) run the single-process path; these run the
same kinds of tampering through worker processes too, check that concurrent writers with the
seal job running between their commits verify clean, and that the template renders exactly
the bytes the signer signs, for any value a column can hold.
"""

from __future__ import annotations

import io
import json
import random
import string
import threading
import time
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentkey.core import context
from audit import signing
from audit.models import Action, AuditCheckpoint, AuditEvent
from audit.sealing import seal_checkpoints
from audit.services import AuditRef, SystemActor, audit_record
from audit.verifier import Verifier
from audit.verify import _copy_lines, _orjson_canonical, _Rows, _segments, audit_verify

pytestmark = pytest.mark.django_db(transaction=True)

ORG = uuid.UUID("0191d6c8-0000-7000-8000-0000000000bb")


@pytest.fixture(autouse=True)
def _no_anchor(settings: Any) -> None:
    settings.AGENTKEY_AUDIT_ANCHOR_FILE = ""
    settings.AGENTKEY_AUDIT_SEAL_GRACE = 0.01


def _record(n: int, *, label: str = "writer") -> AuditEvent:
    return audit_record(
        action=Action.CREDENTIAL_VENDED,
        actor=SystemActor(label=f"{label} {n}"),
        org_id=ORG,
        metadata={"n": n, "ratio": n / 7, "role": "approver", "nested": {"b": [1, 2], "a": None}},
    )


def _tamper(statement: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER ALL")
        try:
            cursor.execute(statement, params)
        finally:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER ALL")


def _kinds(report: Any) -> list[tuple[str, int | None]]:
    return sorted((p.kind, p.event_id) for p in report.problems)


# --- concurrent writers, sealed while they commit ------------------------------------------------------


def _writer(seed: int, count: int, errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    try:
        written = 0
        while written < count:
            size = min(rng.randint(1, 40), count - written)
            try:
                with transaction.atomic():
                    for n in range(size):
                        _record(seed * 100_000 + written + n)
                    # Held open so that later ids commit first; some roll back and leave holes.
                    time.sleep(rng.uniform(0, 0.005))
                    if rng.random() < 0.08:
                        raise RuntimeError("rollback")
                written += size
            except RuntimeError:
                pass
    except BaseException as exc:  # noqa: BLE001  (re-raised by the test)
        errors.append(exc)
    finally:
        connections.close_all()


def test_concurrent_writers_sealed_while_committing_verify_clean_in_one_and_in_two_processes() -> None:
    errors: list[BaseException] = []
    writers = [threading.Thread(target=_writer, args=(seed, 1000, errors)) for seed in range(1, 5)]
    for thread in writers:
        thread.start()
    seals = 0
    while any(t.is_alive() for t in writers):
        seals += len(seal_checkpoints(max_events=500))
        time.sleep(0.02)
    for thread in writers:
        thread.join()
    assert not errors
    seal_checkpoints(max_events=500)
    assert seals >= 3, "checkpoints were sealed while the writers were committing"
    assert AuditEvent.objects.count() == 4000
    holes = sum(len(cp.missing_ids) for cp in AuditCheckpoint.objects.all())
    assert holes > 0, "rolled-back transactions left holes, which are not alarms"

    single = audit_verify(workers=1)
    parallel = audit_verify(workers=2)
    for report in (single, parallel):
        assert report.ok, report.problems[:5]
        assert report.events == report.sealed_events == 4000
    # A write after the last seal is unsealed, not a problem.
    _record(1)
    late = audit_verify(workers=2)
    assert late.ok
    assert late.unsealed_events == 1


# --- every kind of tampering, in one process and in several ------------------------------------------


@pytest.fixture
def sealed_log() -> list[AuditEvent]:
    """60 events in seven checkpoints, with one rolled-back hole in the fourth."""
    events = [_record(n) for n in range(35)]
    try:
        with transaction.atomic():
            _record(999)
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    events += [_record(n) for n in range(35, 60)]
    assert len(seal_checkpoints(max_events=10)) == 7
    return events


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_each_kind_of_tampering_is_reported_alike_by_one_or_several_processes(
    sealed_log: list[AuditEvent], workers: int
) -> None:
    events = sealed_log
    edited, deleted, swapped_a, swapped_b = events[3], events[22], events[12], events[48]
    hole = AuditCheckpoint.objects.exclude(missing_ids=[]).get().missing_ids[0]
    columns = (
        "created_at, org_id, actor_type, actor_id, actor_label, action, target_type, target_id, "
        "target_label, agent_id, tool_id, metadata, ip, request_id, signature"
    )
    _tamper("UPDATE audit_auditevent SET actor_label = 'someone else' WHERE id = %s", [edited.id])
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [deleted.id])
    _tamper(
        f"INSERT INTO audit_auditevent (id, {columns}) SELECT %s, {columns} FROM audit_auditevent WHERE id = %s",  # noqa: S608
        [hole, events[0].id],
    )
    swap = ", ".join(f"{c} = o.{c}" for c in columns.split(", "))
    _tamper(
        f"UPDATE audit_auditevent e SET {swap} FROM (SELECT * FROM audit_auditevent WHERE id IN (%s, %s)) o "  # noqa: S608
        "WHERE (e.id, o.id) IN ((%s, %s), (%s, %s))",
        [swapped_a.id, swapped_b.id, swapped_a.id, swapped_b.id, swapped_b.id, swapped_a.id],
    )
    # The newest sealed event is cut off, and a replay of the first event lands in the unsealed tail.
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[-1].id])
    replayed = (
        f"INSERT INTO audit_auditevent ({columns}) SELECT {columns} FROM audit_auditevent WHERE id = %s"  # noqa: S608
    )
    _tamper(replayed, [events[0].id])
    replay = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()

    report = audit_verify(workers=workers)
    assert _kinds(report) == sorted(
        [
            ("modified", edited.id),
            ("deleted", deleted.id),
            ("inserted", hole),
            ("duplicated", hole),
            ("reordered", swapped_a.id),
            ("reordered", swapped_b.id),
            ("deleted", events[-1].id),
            ("duplicated", replay),
        ]
    )
    assert report.events == 60
    by_id = {p.event_id: p for p in report.problems if p.kind == "modified"}
    assert by_id[edited.id].org_id == str(ORG)
    assert audit_verify(workers=workers, org_id=uuid.uuid4()).counts["modified"] == 0


def test_an_organization_filter_never_hides_problems_beyond_the_listed_ones(
    sealed_log: list[AuditEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Organizations are known only for listed problems; past the listing cap the filtered
    report keeps the whole log's counts rather than saying "ok"."""
    monkeypatch.setattr("audit.verifier.MAX_LISTED", 2)
    monkeypatch.setattr("audit.verify.MAX_LISTED", 2)
    other = uuid.uuid4()
    for event in sealed_log[1:4]:
        _tamper("UPDATE audit_auditevent SET actor_label = 'someone else' WHERE id = %s", [event.id])
    _tamper("UPDATE audit_auditevent SET org_id = %s WHERE id = %s", [other, sealed_log[40].id])

    report = audit_verify(workers=1, org_id=other)

    assert not report.ok
    assert report.counts["modified"] == 4
    assert all(p.org_id in (None, str(other)) for p in report.problems)


# --- the template renders what the signer signs --------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12).map(lambda s: s.replace("\x00", ""))
_plain = st.text(alphabet=string.ascii_letters + string.digits + " -_.:/@", max_size=12)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_ips = st.sampled_from([None, "", "203.0.113.9", "2001:db8::7", "2001:DB8:0:0:0:0:0:1", "::ffff:192.0.2.1"])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    label=st.one_of(_plain, _text),
    target=st.one_of(_plain, _text),
    metadata=st.dictionaries(_text, _json, max_size=4),
    ip=_ips,
    request_id=st.one_of(_plain, _text),
    with_org=st.booleans(),
)
def test_the_fast_path_accepts_exactly_what_the_signer_signed(
    label: str, target: str, metadata: dict[str, Any], ip: str | None, request_id: str, with_org: bool
) -> None:
    class Target:
        def audit_ref(self) -> AuditRef:
            return AuditRef(type="tool", id=target[:64], label=target, tool_id=uuid.uuid4())

    token = context.bind(context.RequestContext(request_id=request_id[:64], ip=ip or None))
    try:
        event = audit_record(
            action=Action.TOOL_UPDATED,
            actor=SystemActor(label=label),
            target=Target(),
            org_id=ORG if with_org else None,
            metadata=metadata,
        )
    finally:
        context.reset(token)
    assert _intact(event.id)
    # One character more anywhere in the content and it no longer verifies.
    _tamper("UPDATE audit_auditevent SET actor_label = actor_label || 'x' WHERE id = %s", [event.id])
    assert not _intact(event.id)


def _intact(event_id: int) -> bool:
    """What audit_verify's COPY walk says of one (unsealed) event: does it match its signature?"""
    keys = signing.get_audit_keys().keys
    with transaction.atomic():
        lines = list(_copy_lines(connection.connection, event_id, event_id))
    report = _Rows(keys).check(Verifier(keys=keys, checkpoints=[]), lines)
    assert (report.events, report.unsealed_events) == (1, 1)
    assert all(p.event_id == event_id for p in report.problems)
    return report.ok


@pytest.mark.parametrize(
    ("signed", "forged"),
    [
        ("a\nb", "a\\nb"),  # COPY writes a newline as \n, JSON too: the same bytes, not the same text
        ("a\tb", "a\\tb"),
        ("x\\y", "x\\\\y"),
        ('say "hi"', "say hi"),
        ("zwölf", "zw\\u00f6lf"),  # the signer escapes the ö; the forgery spells the escape out
        ("bell\x07", "bell\\u0007"),
        ("del\x7f", "del\\u007f"),
        ("v\x0b", "v\\u000b"),
    ],
)
def test_text_the_template_cannot_render_verifies_exactly(signed: str, forged: str) -> None:
    """Escapes, quotes, control characters and non-ASCII in a text column: the legitimate row
    verifies, and a row holding the text that renders to the signed bytes does not."""
    event = audit_record(action=Action.TOOL_UPDATED, actor=SystemActor(label=signed), org_id=ORG)
    assert _intact(event.id)
    _tamper("UPDATE audit_auditevent SET actor_label = %s WHERE id = %s", [forged, event.id])
    assert not _intact(event.id)


def test_a_quote_cannot_move_text_between_columns() -> None:
    event = audit_record(action=Action.TOOL_UPDATED, actor=SystemActor(label="alice"), org_id=ORG)
    # actor_id and actor_label spliced so that, pasted into the template, they would spell the
    # signed pair: caught, because a quote in a text column sends the row to the exact path.
    actor_id = AuditEvent.objects.get(id=event.id).actor_id
    _tamper(
        "UPDATE audit_auditevent SET actor_id = %s, actor_label = '' WHERE id = %s",
        [f'{actor_id}","actor_label":"alice', event.id],
    )
    assert not _intact(event.id)


# Floats of every magnitude (Python's repr turns to exponents below 1e-4 and from 1e16 on,
# orjson differently), integers past 64 bits, and text with whatever JSON or COPY escapes.
_any_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
_edgy_text = st.text(alphabet='"\\/\n\t\x07\x1f\x7f -eE+.0é✓', max_size=8)
_metadata = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=-1e-3, max_value=1e-3)
    | st.sampled_from([1e-5, 0.0001, 9.999e-5, 1e16, 1e22, -0.0, 5e-324, 1.7976931348623157e308])
    | st.one_of(_any_text, _edgy_text),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.one_of(_any_text, _edgy_text), inner, max_size=4)
    ),
    max_leaves=12,
)


def _copy_escaped(text: str) -> bytes:
    """A value as COPY's text format writes it (backslash and control characters escaped)."""
    escapes = {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    return "".join(escapes.get(c, c) for c in text).encode("utf-8")


@settings(max_examples=600, deadline=None)
@given(value=_metadata, spacing=st.sampled_from([(", ", ": "), (",", ":")]), ascii_only=st.booleans())
def test_orjson_gives_the_canonical_metadata_bytes_or_steps_aside(
    value: Any, spacing: tuple[str, str], ascii_only: bool
) -> None:
    """The fast path (orjson) either declines or writes exactly the exact encoder's bytes, for
    jsonb-like text and other spellings of the same JSON."""
    raw = _copy_escaped(json.dumps(value, separators=spacing, ensure_ascii=ascii_only))
    exact = _Rows({}).exact_metadata(raw)
    fast = _orjson_canonical(raw)
    assert fast is None or fast == exact
    assert exact == json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    # And it does not always decline: plain metadata is what it is for.
    if isinstance(value, dict) and all(
        _plain_text(k) and (_plain_text(v) or _small_int(v)) for k, v in value.items()
    ):
        assert fast == exact


def _plain_text(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and not any(c in value for c in ('"', "\\", "e-", "e+", "0.0000"))
    )


def _small_int(value: Any) -> bool:
    return isinstance(value, int) and -(2**63) <= value < 2**63


def test_orjson_steps_aside_where_its_numbers_differ_and_serves_plain_metadata() -> None:
    for text in [
        b'{"x": 0.00001}',
        b"[1e-05]",
        b'{"big": 100000000000000000000}',
        b'{"s": "\x7f"}',
        b'{"s": "\xc3\xa9"}',
    ]:
        assert _orjson_canonical(text) is None, text
        assert _Rows({}).exact_metadata(text)
    deep = b"[" * 300 + b"]" * 300
    assert _orjson_canonical(deep) is None
    plain = b'{"tool_name": "GitHub deploy", "grant_id": "9a6a1942-e46a-4459-96cc-725cfab0861c", "n": 7, "r": 0.5}'
    assert _orjson_canonical(plain) == _Rows({}).exact_metadata(plain)
    assert _orjson_canonical(plain) is not None


def _cp(sequence: int, first: int, last: int, count: int) -> dict[str, Any]:
    return {"sequence": sequence, "first_event_id": first, "last_event_id": last, "event_count": count}


def test_worker_ranges_are_whole_checkpoints_and_the_last_one_takes_the_unsealed_tail() -> None:
    cps = [_cp(n + 1, n * 10 + 1, n * 10 + 10, 10) for n in range(6)]
    ranges = [(s.lo, s.hi, [cp["sequence"] for cp in s.checkpoints]) for s in _segments(cps, 1, 3)]
    assert ranges == [(1, 20, [1, 2]), (21, 40, [3, 4]), (41, 2**63 - 1, [5, 6])]
    # A chain with a gap (tampered) or a start inside the chain is walked in one piece.
    gapped = [*cps[:3], _cp(4, 35, 40, 6)]
    assert [(s.lo, len(s.checkpoints)) for s in _segments(gapped, 1, 2)] == [(1, 4)]
    assert len(_segments(cps, 15, 2)) == 1


def test_the_command_verifies_with_workers_and_refuses_a_nonsense_count(sealed_log: list[AuditEvent]) -> None:
    out = io.StringIO()
    call_command("audit_verify", "--workers", "2", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert (summary["ok"], summary["events"], summary["checkpoints"]) == (True, 60, 7)
    with pytest.raises(CommandError, match=r"--workers must be at least 1\. Leave it out"):
        call_command("audit_verify", "--workers", "0")
