"""Signed events and chained checkpoints: a superuser who disables the triggers is still caught.

Tampering is done the way an attacker with database superuser rights would do it: raw SQL
after ``ALTER TABLE ... DISABLE TRIGGER ALL`` (the append-only triggers of audit/0002).
"""

from __future__ import annotations

import base64
import io
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction

from agentkey.core import context
from audit.models import Action, AuditCheckpoint, AuditEvent
from audit.sealing import seal_checkpoints
from audit.services import SystemActor, audit_record
from audit.verify import audit_verify

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
ORG = "0191d6c8-0000-7000-8000-0000000000aa"


@pytest.fixture(autouse=True)
def anchor_file(settings: Any, tmp_path: Path) -> Path:
    path = tmp_path / "anchors.jsonl"
    settings.AGENTKEY_AUDIT_ANCHOR_FILE = str(path)
    return path


def _record(n: int) -> AuditEvent:
    return audit_record(
        action=Action.CREDENTIAL_VENDED,
        actor=SystemActor(label=f"writer {n}"),
        org_id=uuid.UUID(ORG),
        metadata={
            "n": n,
            "ratio": n / 7,
            "big": 1e20,
            "note": "ünïcødé ✓",
            "nested": {"b": [1, 2], "a": None},
        },
    )


def _write(count: int) -> list[AuditEvent]:
    events = []
    for n in range(count):
        token = context.bind(
            context.RequestContext(request_id=f"req{n:04d}", ip="2001:db8::7" if n % 2 else "203.0.113.5")
        )
        try:
            events.append(_record(n))
        finally:
            context.reset(token)
    return events


def _rolled_back_gap() -> None:
    try:
        with transaction.atomic():
            _record(999)
            raise RuntimeError("changed my mind")
    except RuntimeError:
        pass


@pytest.fixture
def sealed() -> list[AuditEvent]:
    """Twelve events with a rolled-back hole in the middle, sealed in checkpoints of five ids."""
    events = _write(6)
    _rolled_back_gap()
    events += _write(6)
    assert len(seal_checkpoints(max_events=5)) == 3
    return events


def _tamper(statement: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        for table in ("audit_auditevent", "audit_auditcheckpoint"):
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        try:
            cursor.execute(statement, params)
        finally:
            for table in ("audit_auditevent", "audit_auditcheckpoint"):
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")


def _kinds(report: Any) -> list[tuple[str, int | None]]:
    return sorted((p.kind, p.event_id) for p in report.problems)


def test_every_event_is_signed_with_the_active_key_id(sealed: list[AuditEvent]) -> None:
    kid, _sep, mac = sealed[0].signature.partition(":")
    assert kid == "testaudit"
    assert len(base64.b64decode(mac)) == 32


def test_a_clean_log_verifies_with_no_problems_and_rolled_back_ids_are_not_alarms(
    sealed: list[AuditEvent],
) -> None:
    report = audit_verify()
    assert report.ok, report.problems
    assert report.events == report.sealed_events == 12
    assert sum(len(cp.missing_ids) for cp in AuditCheckpoint.objects.all()) == 1


def test_editing_a_field_is_reported_as_modified(sealed: list[AuditEvent]) -> None:
    target = sealed[3]
    _tamper("UPDATE audit_auditevent SET actor_label = 'someone else' WHERE id = %s", [target.id])
    assert _kinds(audit_verify()) == [("modified", target.id)]


def test_editing_metadata_of_an_unsealed_event_fails_its_signature(sealed: list[AuditEvent]) -> None:
    late = _write(1)[0]
    _tamper("""UPDATE audit_auditevent SET metadata = '{"n": 1}' WHERE id = %s""", [late.id])
    assert _kinds(audit_verify()) == [("invalid_signature", late.id)]


def test_deleting_a_row_is_reported_as_deleted(sealed: list[AuditEvent]) -> None:
    target = sealed[7]
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [target.id])
    assert _kinds(audit_verify()) == [("deleted", target.id)]


def test_a_forged_row_in_a_rolled_back_hole_is_reported_as_inserted(sealed: list[AuditEvent]) -> None:
    hole = AuditCheckpoint.objects.exclude(missing_ids=[]).get().missing_ids[0]
    # Even a perfectly signed copy of a real event does not fit a sealed hole.
    _tamper(
        "INSERT INTO audit_auditevent (id, created_at, org_id, actor_type, actor_id, actor_label, action, "
        "target_type, target_id, target_label, agent_id, tool_id, metadata, ip, request_id, signature) "
        "SELECT %s, created_at, org_id, actor_type, actor_id, actor_label, action, target_type, target_id, "
        "target_label, agent_id, tool_id, metadata, ip, request_id, signature FROM audit_auditevent WHERE id = %s",
        [hole, sealed[0].id],
    )
    assert ("inserted", hole) in _kinds(audit_verify())


def test_a_forged_row_after_the_last_checkpoint_fails_its_signature_or_is_a_duplicate(
    sealed: list[AuditEvent],
) -> None:
    columns = (
        "created_at, org_id, actor_type, actor_id, actor_label, action, target_type, target_id, "
        "target_label, agent_id, tool_id, metadata, ip, request_id"
    )
    copy = f"INSERT INTO audit_auditevent ({columns}, signature) SELECT {columns}, {{}} FROM audit_auditevent"  # noqa: S608
    _tamper(
        copy.format("'testaudit:' || encode(sha256('forged'), 'base64')") + " WHERE id = %s", [sealed[0].id]
    )
    _tamper(copy.format("signature") + " WHERE id = %s", [sealed[1].id])
    forged, replayed = AuditEvent.objects.order_by("-id").values_list("id", flat=True)[:2][::-1]
    assert _kinds(audit_verify()) == [("duplicated", replayed), ("invalid_signature", forged)]
    # Sealing the forgeries does not launder them.
    seal_checkpoints()
    assert _kinds(audit_verify()) == [("duplicated", replayed), ("modified", forged)]


def test_swapping_the_contents_of_two_rows_is_reported_as_reordered(sealed: list[AuditEvent]) -> None:
    a, b = sealed[1], sealed[8]
    columns = [
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
    assignments = ", ".join(f"{c} = o.{c}" for c in columns)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER ALL")
        try:
            cursor.execute(
                "CREATE TEMP TABLE swap AS SELECT * FROM audit_auditevent WHERE id IN (%s, %s)", [a.id, b.id]
            )
            cursor.execute(
                f"UPDATE audit_auditevent e SET {assignments} FROM swap o WHERE (e.id, o.id) IN ((%s, %s), (%s, %s))",  # noqa: S608
                [a.id, b.id, b.id, a.id],
            )
            cursor.execute("DROP TABLE swap")
        finally:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER ALL")
    report = audit_verify()
    assert _kinds(report) == [("reordered", a.id), ("reordered", b.id)]
    details = {p.event_id: p.detail for p in report.problems}
    assert str(b.id) in details[a.id]


def test_truncating_the_sealed_tail_is_reported_as_deleted(sealed: list[AuditEvent]) -> None:
    newest = [e.id for e in sealed[-3:]]
    _tamper("DELETE FROM audit_auditevent WHERE id = ANY(%s)", [newest])
    assert _kinds(audit_verify()) == [("deleted", i) for i in newest]


def test_dropping_the_newest_checkpoint_with_its_events_is_caught_by_the_anchor(
    sealed: list[AuditEvent], anchor_file: Path
) -> None:
    newest = AuditCheckpoint.objects.order_by("-sequence").first()
    assert newest is not None
    _tamper(
        "DELETE FROM audit_auditevent WHERE id >= %s",
        params=[newest.first_event_id],
    )
    _tamper("DELETE FROM audit_auditcheckpoint WHERE sequence = %s", [newest.sequence])
    report = audit_verify()
    assert [(p.kind, p.checkpoint) for p in report.problems] == [("checkpoint_missing", newest.sequence)]
    assert len(anchor_file.read_text().splitlines()) == 3


def test_a_configured_anchor_file_that_is_gone_is_reported_with_what_to_do(
    sealed: list[AuditEvent], anchor_file: Path
) -> None:
    anchor_file.unlink()
    report = audit_verify()
    assert not report.ok
    assert [p.kind for p in report.problems] == ["anchor_unreadable"]
    assert str(anchor_file) in report.problems[0].detail
    assert "does not exist" in report.problems[0].detail
    assert "Restore it" in report.problems[0].detail
    # The same for a file given on the command line, and the command fails.
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command(
            "audit_verify", "--anchor-file", str(anchor_file.with_name("elsewhere.jsonl")), stdout=out
        )
    assert (
        f"PROBLEM anchor_unreadable: anchor file {anchor_file.with_name('elsewhere.jsonl')} cannot"
        in out.getvalue()
    )


def test_an_unreadable_or_garbled_anchor_file_is_reported(
    sealed: list[AuditEvent], anchor_file: Path
) -> None:
    anchor_file.write_text(anchor_file.read_text() + "not json\n")
    garbled = audit_verify()
    assert [p.kind for p in garbled.problems] == ["anchor_unreadable"]
    assert "line 4 is not an anchor line" in garbled.problems[0].detail
    anchor_file.unlink()
    anchor_file.mkdir()  # a directory where the file should be: reading it fails
    assert [p.kind for p in audit_verify().problems] == ["anchor_unreadable"]


def test_no_anchor_file_yet_is_fine_while_nothing_is_sealed(anchor_file: Path) -> None:
    _write(2)
    assert not anchor_file.exists()
    assert audit_verify().ok
    seal_checkpoints()
    assert anchor_file.exists(), "the seal job writes the first anchor line"
    assert audit_verify().ok


def test_editing_or_removing_a_middle_checkpoint_breaks_the_chain(sealed: list[AuditEvent]) -> None:
    _tamper("UPDATE audit_auditcheckpoint SET events_digest = repeat('0', 64) WHERE sequence = 1")
    assert {p.kind for p in audit_verify().problems} >= {"checkpoint_invalid", "checkpoint_chain_broken"}
    _tamper("DELETE FROM audit_auditcheckpoint WHERE sequence = 2")
    kinds = {(p.kind, p.checkpoint) for p in audit_verify().problems}
    assert ("checkpoint_missing", 3) in kinds


def test_the_command_exits_non_zero_and_names_the_problem(sealed: list[AuditEvent]) -> None:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    assert "ok: True" in out.getvalue()
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [sealed[2].id])
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("audit_verify", stdout=out)
    assert f"PROBLEM deleted: event {sealed[2].id}" in out.getvalue()
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("audit_verify", "--json", "--since-checkpoint", "2", stdout=out)
    assert exited.value.code == 1
    assert json.loads(out.getvalue())["problem_counts"] == {"deleted": 1}


def test_a_rotated_key_still_verifies_old_events(sealed: list[AuditEvent], settings: Any) -> None:
    fresh = "fresh:" + base64.b64encode(b"\x07" * 32).decode()
    settings.AGENTKEY_AUDIT_KEY = f"{fresh},{django_settings.AGENTKEY_AUDIT_KEY}"
    assert _write(1)[0].signature.startswith("fresh:")
    seal_checkpoints()
    assert audit_verify().ok


# --- concurrent writers ------------------------------------------------------------------------------


def _writer(seed: int, count: int, errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    try:
        for n in range(count):
            try:
                with transaction.atomic():
                    _record(seed * 1000 + n)
                    # Hold the transaction open so later ids commit first.
                    time.sleep(rng.uniform(0, 0.01))
                    if rng.random() < 0.1:
                        raise RuntimeError("rollback")
            except RuntimeError:
                pass
    except BaseException as exc:  # noqa: BLE001  (re-raised by the test)
        errors.append(exc)
    finally:
        connections.close_all()


def test_concurrent_writers_with_out_of_order_commits_verify_clean_across_seals(settings: Any) -> None:
    settings.AGENTKEY_AUDIT_SEAL_GRACE = 0.01
    errors: list[BaseException] = []
    writers = [threading.Thread(target=_writer, args=(seed, 60, errors)) for seed in range(1, 7)]
    for thread in writers:
        thread.start()
    seals = 0
    while any(t.is_alive() for t in writers):
        seal_checkpoints(max_events=40)
        seals += 1
        time.sleep(0.05)
    for thread in writers:
        thread.join()
    assert not errors
    seal_checkpoints(max_events=40)
    report = audit_verify()
    assert report.ok, report.problems[:5]
    assert seals >= 3
    assert report.sealed_events == report.events == AuditEvent.objects.count()
    holes = sum(len(cp.missing_ids) for cp in AuditCheckpoint.objects.all())
    assert holes > 0, "some transactions rolled back, leaving holes that are not alarms"


# --- export and the offline verifier ---------------------------------------------------------------


def _export(path: Path) -> None:
    with path.open("w") as handle:
        call_command("audit_export", stdout=handle, stderr=io.StringIO())


def _offline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / "verify-audit-export"), *args],
        env={"AGENTKEY_AUDIT_KEY": django_settings.AGENTKEY_AUDIT_KEY, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_offline_verifier_accepts_a_clean_export_and_rejects_a_tampered_one(
    sealed: list[AuditEvent], tmp_path: Path, anchor_file: Path
) -> None:
    export = tmp_path / "export.jsonl"
    _export(export)
    lines = export.read_text().splitlines()
    assert sum(json.loads(line).get("type") == "checkpoint" for line in lines) == 3
    clean = _offline(str(export), "--anchor-file", str(anchor_file))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "ok: True" in clean.stdout

    records = [json.loads(line) for line in lines]
    records[4]["actor_label"] = "not what happened"
    del records[9]
    export.write_text("".join(json.dumps(r) + "\n" for r in records))
    tampered = _offline(str(export), "--json")
    assert tampered.returncode == 1
    problems = {(p["kind"], p.get("event_id")) for p in json.loads(tampered.stdout)["problems"]}
    assert problems == {("modified", sealed[4].id), ("deleted", sealed[9].id)}

    structure_only = _offline(str(export), "--no-key")
    assert structure_only.returncode == 1  # the deletion shows without the key too


def test_the_offline_verifier_carries_the_same_engine() -> None:
    def block(text: str) -> str:
        return text[text.index("# --- ENGINE BEGIN ---") : text.index("# --- ENGINE END ---")]

    engine = block((ROOT / "audit" / "verifier.py").read_text())
    assert engine == block((ROOT / "bin" / "verify-audit-export").read_text())
    assert "django" not in engine
